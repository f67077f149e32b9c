package fakes3

import (
	"encoding/xml"
	"fmt"
	"net/http"
)

// apiError is an S3 error answer: the code clients branch on, the HTTP
// status S3 gives it, and a message for people.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// The errors S3 answers with, by the codes the SDK and clients look for.
var (
	errAccessDenied      = errorf(http.StatusForbidden, "AccessDenied", "Access Denied")
	errSignatureMismatch = errorf(http.StatusForbidden, "SignatureDoesNotMatch",
		"The request signature we calculated does not match the signature you provided. Check your key and signing method.")
	errInvalidAccessKey = errorf(http.StatusForbidden, "InvalidAccessKeyId",
		"The AWS Access Key Id you provided does not exist in our records.")
	errExpired       = errorf(http.StatusForbidden, "AccessDenied", "Request has expired")
	errNoSuchBucket  = errorf(http.StatusNotFound, "NoSuchBucket", "The specified bucket does not exist")
	errNoSuchKey     = errorf(http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
	errNoSuchUpload  = errorf(http.StatusNotFound, "NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.")
	errNoSuchCORS    = errorf(http.StatusNotFound, "NoSuchCORSConfiguration", "The CORS configuration does not exist")
	errInvalidPart   = errorf(http.StatusBadRequest, "InvalidPart", "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.")
	errPartOrder     = errorf(http.StatusBadRequest, "InvalidPartOrder", "The list of parts was not in ascending order. Parts must be ordered by part number.")
	errTooSmall      = errorf(http.StatusBadRequest, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed object size.")
	errTooLarge      = errorf(http.StatusBadRequest, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed object size.")
	errPrecondition  = errorf(http.StatusPreconditionFailed, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
	errMalformedXML  = errorf(http.StatusBadRequest, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema.")
	errMissingLength = errorf(http.StatusLengthRequired, "MissingContentLength", "You must provide the Content-Length HTTP header.")
	errIncomplete    = errorf(http.StatusBadRequest, "IncompleteBody", "You did not provide the number of bytes specified by the Content-Length HTTP header.")
	errBadDigest     = errorf(http.StatusBadRequest, "BadDigest", "The checksum you specified did not match the calculated checksum.")
	errPayloadHash   = errorf(http.StatusBadRequest, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
	errKeyTooLong    = errorf(http.StatusBadRequest, "KeyTooLongError", "Your key is too long.")
	errNotImpl       = errorf(http.StatusNotImplemented, "NotImplemented", "A header or query you provided implies functionality that is not implemented.")
)

// errorBody is the XML document of an error answer.
type errorBody struct {
	XMLName   xml.Name `xml:"Error"`
	Code      string   `xml:"Code"`
	Message   string   `xml:"Message"`
	Resource  string   `xml:"Resource,omitempty"`
	RequestID string   `xml:"RequestId"`
}

// fail writes e as S3 does: XML body (none for HEAD), the error's status.
// Any unread request body is drained first (up to a bound) so that a client
// still sending a small body reads the answer instead of a reset.
func fail(w http.ResponseWriter, r *http.Request, e *apiError) {
	drain(r)
	writeXML(w, r, e.Status, errorBody{
		Code:      e.Code,
		Message:   e.Message,
		Resource:  r.URL.Path,
		RequestID: w.Header().Get("X-Amz-Request-Id"),
	})
}

// writeXML writes v as an XML document with status.
func writeXML(w http.ResponseWriter, r *http.Request, status int, v any) {
	body, err := xml.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write([]byte(xml.Header))
		w.Write(body)
	}
}
