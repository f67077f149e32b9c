package fakes3

import (
	"crypto/hmac"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

const (
	sigAlgorithm    = "AWS4-HMAC-SHA256"
	amzDateFormat   = "20060102T150405Z"
	unsignedPayload = "UNSIGNED-PAYLOAD"
	// maxSkew is how far a header-signed request's date may be from the
	// server's clock, and a presigned one's date ahead of it (as on S3).
	maxSkew = 15 * time.Minute
	// maxExpires is the longest lifetime SigV4 lets a presigned URL claim.
	maxExpires = 7 * 24 * 3600
)

// signer recomputes signatures the way the SDK makes them. S3 does not
// double-encode the path: the canonical URI is built here, once.
var signer = v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })

// authenticate checks the SigV4 signature of r, in the Authorization header
// or in the query (presigned), and returns the payload hash the body must
// match: a hex SHA-256, or "" when the payload is not signed.
func (s *Server) authenticate(r *http.Request) (payload string, e *apiError) {
	if r.Header.Get("X-Amz-Security-Token") != "" || r.URL.Query().Get("X-Amz-Security-Token") != "" {
		// The one identity has no session: a token names credentials this
		// server never issued.
		return "", errorf(http.StatusForbidden, "InvalidToken", "The provided token is malformed or otherwise invalid.")
	}
	if auth := r.Header.Get("Authorization"); auth != "" {
		return s.authHeader(r, auth)
	}
	q := r.URL.Query()
	if q.Has("X-Amz-Signature") || q.Has("X-Amz-Algorithm") || q.Has("X-Amz-Credential") {
		return s.authQuery(r, q)
	}
	if q.Has("Signature") || q.Has("AWSAccessKeyId") {
		return "", errorf(http.StatusBadRequest, "InvalidRequest", "Signature Version 2 is not supported; use AWS4-HMAC-SHA256.")
	}
	return "", errAccessDenied // anonymous: no bucket here is public
}

// authHeader verifies an Authorization: AWS4-HMAC-SHA256 header.
func (s *Server) authHeader(r *http.Request, auth string) (string, *apiError) {
	rest, ok := strings.CutPrefix(auth, sigAlgorithm+" ")
	if !ok {
		return "", errorf(http.StatusBadRequest, "InvalidArgument", "Unsupported Authorization Type")
	}
	var cred, signedList, sig string
	for f := range strings.SplitSeq(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		switch k {
		case "Credential":
			cred = v
		case "SignedHeaders":
			signedList = v
		case "Signature":
			sig = v
		}
	}
	if cred == "" || signedList == "" || sig == "" {
		return "", errorf(http.StatusBadRequest, "AuthorizationHeaderMalformed", "The authorization header is malformed; it must name Credential, SignedHeaders and Signature.")
	}
	t, err := time.Parse(amzDateFormat, r.Header.Get("X-Amz-Date"))
	if err != nil {
		return "", errorf(http.StatusForbidden, "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
	}
	if e := s.checkCredential(cred, t, "AuthorizationHeaderMalformed"); e != nil {
		return "", e
	}
	if d := s.now().Sub(t); d > maxSkew || d < -maxSkew {
		return "", errorf(http.StatusForbidden, "RequestTimeTooSkewed", "The difference between the request time and the current time is too large.")
	}
	payload := r.Header.Get("X-Amz-Content-Sha256")
	switch {
	case payload == "":
		return "", errorf(http.StatusBadRequest, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
	case strings.HasPrefix(payload, "STREAMING-"):
		return "", errorf(http.StatusNotImplemented, "NotImplemented", "aws-chunked (streaming) payloads are not implemented by this server")
	case payload != unsignedPayload && !isHexSHA256(payload):
		return "", errorf(http.StatusBadRequest, "InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD or a SHA-256 hex digest")
	}

	req, e := rebuild(r, r.URL.Query(), strings.Split(signedList, ";"))
	if e != nil {
		return "", e
	}
	if err := signer.SignHTTP(r.Context(), s.creds(), req, payload, "s3", s.Region, t); err != nil {
		return "", errorf(http.StatusInternalServerError, "InternalError", "signing: %v", err)
	}
	_, want, _ := strings.Cut(req.Header.Get("Authorization"), "Signature=")
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return "", errSignatureMismatch
	}
	if payload == unsignedPayload {
		payload = ""
	}
	return payload, nil
}

// authQuery verifies a presigned request: signature, lifetime, credential.
func (s *Server) authQuery(r *http.Request, q url.Values) (string, *apiError) {
	for _, p := range []string{"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature"} {
		if q.Get(p) == "" {
			return "", errorf(http.StatusBadRequest, "AuthorizationQueryParametersError",
				"Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.")
		}
	}
	if q.Get("X-Amz-Algorithm") != sigAlgorithm {
		return "", errorf(http.StatusBadRequest, "AuthorizationQueryParametersError", "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"")
	}
	t, err := time.Parse(amzDateFormat, q.Get("X-Amz-Date"))
	if err != nil {
		return "", errorf(http.StatusBadRequest, "AuthorizationQueryParametersError", "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
	}
	exp, err := strconv.Atoi(q.Get("X-Amz-Expires"))
	if err != nil || exp < 1 || exp > maxExpires {
		return "", errorf(http.StatusBadRequest, "AuthorizationQueryParametersError", "X-Amz-Expires must be a number of seconds from 1 to 604800")
	}
	if e := s.checkCredential(q.Get("X-Amz-Credential"), t, "AuthorizationQueryParametersError"); e != nil {
		return "", e
	}
	now := s.now()
	if t.Sub(now) > maxSkew {
		return "", errorf(http.StatusForbidden, "AccessDenied", "Request is not valid yet")
	}
	if !now.Before(t.Add(time.Duration(exp) * time.Second)) {
		return "", errExpired
	}
	payload := q.Get("X-Amz-Content-Sha256")
	if payload == "" {
		payload = r.Header.Get("X-Amz-Content-Sha256")
	}
	if payload == "" {
		payload = unsignedPayload
	}
	if payload != unsignedPayload && !isHexSHA256(payload) {
		return "", errorf(http.StatusBadRequest, "InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD or a SHA-256 hex digest")
	}

	sig := q.Get("X-Amz-Signature")
	unsigned := url.Values{}
	for k, v := range q {
		if k != "X-Amz-Signature" {
			unsigned[k] = v
		}
	}
	req, e := rebuild(r, unsigned, strings.Split(q.Get("X-Amz-SignedHeaders"), ";"))
	if e != nil {
		return "", e
	}
	signed, _, err := signer.PresignHTTP(r.Context(), s.creds(), req, payload, "s3", s.Region, t,
		func(o *v4.SignerOptions) { o.DisableHeaderHoisting = true })
	if err != nil {
		return "", errorf(http.StatusInternalServerError, "InternalError", "signing: %v", err)
	}
	su, err := url.Parse(signed)
	if err != nil {
		return "", errorf(http.StatusInternalServerError, "InternalError", "signing: %v", err)
	}
	if want := su.Query().Get("X-Amz-Signature"); !hmac.Equal([]byte(want), []byte(sig)) {
		return "", errSignatureMismatch
	}
	if payload == unsignedPayload {
		payload = ""
	}
	return payload, nil
}

// checkCredential checks "<access key>/<day>/<region>/s3/aws4_request"
// against the server's identity and the request's date.
func (s *Server) checkCredential(cred string, t time.Time, malformed string) *apiError {
	f := strings.Split(cred, "/")
	if len(f) != 5 || f[4] != "aws4_request" || f[3] != "s3" {
		return errorf(http.StatusBadRequest, malformed, "The credential must be <key>/<date>/<region>/s3/aws4_request.")
	}
	if !hmac.Equal([]byte(f[0]), []byte(s.AccessKey)) {
		return errInvalidAccessKey
	}
	if f[1] != t.Format("20060102") {
		return errorf(http.StatusBadRequest, malformed, "The credential date %q does not match the request date.", f[1])
	}
	if f[2] != s.Region {
		return errorf(http.StatusBadRequest, malformed, "The region '%s' is wrong; expecting '%s'", f[2], s.Region)
	}
	return nil
}

func (s *Server) creds() aws.Credentials {
	return aws.Credentials{AccessKeyID: s.AccessKey, SecretAccessKey: s.SecretKey}
}

// rebuild is the request as the client signed it: the canonical path, the
// given query, and only the headers it says it signed, with the values they
// arrived with. A signed header that did not arrive makes the signature
// fail, as a changed one does.
func rebuild(r *http.Request, query url.Values, signed []string) (*http.Request, *apiError) {
	path := canonicalPath(r.URL.Path)
	req := &http.Request{
		Method: r.Method,
		URL:    &url.URL{Scheme: "http", Host: r.Host, Opaque: "//" + r.Host + path, RawQuery: query.Encode()},
		Host:   r.Host,
		Header: http.Header{},
	}
	for _, name := range signed {
		switch name {
		case "host":
		case "content-length":
			// The signer signs the request's length, not a header: the
			// length of the body that actually arrives.
			if r.ContentLength <= 0 {
				return nil, errSignatureMismatch
			}
			req.ContentLength = r.ContentLength
		default:
			v := r.Header.Values(name)
			if len(v) == 0 {
				return nil, errSignatureMismatch
			}
			req.Header[http.CanonicalHeaderKey(name)] = v
		}
	}
	return req.WithContext(r.Context()), nil
}

// canonicalPath is the decoded path escaped as S3 canonicalizes it: every
// byte but the unreserved characters and '/' becomes %XX.
func canonicalPath(p string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~' || c == '/' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

func isHexSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
