package caddyupload

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyupload/caddyupload/storage"
)

// apiError is an error with the status and code the API documents
// (openapi.yaml).
// Its message is shown to the client, so it never carries a secret, a key
// of another subject or a presigned URL.
type apiError struct {
	Status     int
	Code       string
	Message    string
	RetryAfter int // seconds; 0 = no Retry-After header
	// Bearer sets WWW-Authenticate on 401s; invalid marks a token that was
	// presented but refused (RFC 6750 error="invalid_token").
	Bearer  bool
	Invalid bool
	// Allow lists the methods of the path, for a 405.
	Allow []string
	cause error
}

func (e *apiError) Error() string {
	if e.cause != nil {
		return e.Code + ": " + e.Message + ": " + e.cause.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *apiError) Unwrap() error { return e.cause }

func errInvalid(msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: "invalid_request", Message: msg}
}

func errNotFound() *apiError {
	return &apiError{Status: http.StatusNotFound, Code: "not_found", Message: "no such upload"}
}

func errForbidden(msg string) *apiError {
	return &apiError{Status: http.StatusForbidden, Code: "forbidden", Message: msg}
}

func errUnauthenticated(msg string, invalidToken bool) *apiError {
	return &apiError{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: msg, Bearer: true, Invalid: invalidToken}
}

func errTooLarge(msg string) *apiError {
	return &apiError{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: msg}
}

func errUnsupportedType(msg string) *apiError {
	return &apiError{Status: http.StatusUnsupportedMediaType, Code: "unsupported_type", Message: msg}
}

func errExpired(msg string) *apiError {
	return &apiError{Status: http.StatusGone, Code: "expired", Message: msg}
}

func errNotUploaded(msg string) *apiError {
	return &apiError{Status: http.StatusConflict, Code: "not_uploaded", Message: msg}
}

func errVerification(msg string) *apiError {
	return &apiError{Status: http.StatusUnprocessableEntity, Code: "verification_failed", Message: msg}
}

func errIdentityUnavailable(cause error) *apiError {
	return &apiError{Status: http.StatusServiceUnavailable, Code: "identity_unavailable",
		Message: "the identity provider cannot be reached yet; try again shortly", RetryAfter: 5, cause: cause}
}

func errMethodNotAllowed(allow []string) *apiError {
	return &apiError{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: "method not allowed on this path", Allow: allow}
}

// errStorage maps a backend failure: 503 when the server could not be
// reached at all, 502 when it answered with something unexpected.
func errStorage(cause error) *apiError {
	status := http.StatusBadGateway
	var ne net.Error
	if errors.As(cause, &ne) {
		status = http.StatusServiceUnavailable
	}
	return &apiError{Status: status, Code: "storage_unavailable", Message: "object storage failed; nothing was confirmed", cause: cause}
}

// errLedger reports that the ledger could not be written: nothing that
// depends on the write is acknowledged.
func errLedger(cause error) *apiError {
	return &apiError{Status: http.StatusServiceUnavailable, Code: "storage_unavailable", Message: "the upload ledger is unavailable", RetryAfter: 1, cause: cause}
}

// asAPIError turns any error into the answer a client gets. Unknown errors
// become a 503 rather than a 500 with details: what failed is logged, not
// shown.
func asAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return errNotFound()
	case errors.Is(err, storage.ErrUnavailable):
		return errStorage(err)
	}
	return &apiError{Status: http.StatusServiceUnavailable, Code: "storage_unavailable", Message: "temporarily unavailable", RetryAfter: 1, cause: err}
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	// Message repeats error.message at the top level, where Uppy looks.
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, e *apiError) {
	h := w.Header()
	if e.Bearer {
		if e.Invalid {
			h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		} else {
			h.Set("WWW-Authenticate", "Bearer")
		}
	}
	if len(e.Allow) > 0 {
		h.Set("Allow", strings.Join(e.Allow, ", "))
	}
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	var body errorBody
	body.Error.Code = e.Code
	body.Error.Message = e.Message
	body.Message = e.Message
	writeJSON(w, e.Status, body)
}
