package embedded

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyupload/caddyupload/storage/s3store"
)

// now is the clock of the signature checks; tests replace it.
var now = time.Now

const (
	sigAlgorithm = "AWS4-HMAC-SHA256"
	amzDate      = "20060102T150405Z"
	// maxPresignedTTL is the longest lifetime SigV4 allows a presigned
	// request.
	maxPresignedTTL = 7 * 24 * time.Hour
	// maxClockSkew is how far in the future a signing date may be.
	maxClockSkew = 15 * time.Minute
)

// signer is what the upload handler signs for the server with: the same
// credentials and region, so the handler can check signatures itself.
type signer struct {
	accessKeyID, secret, region string
}

// errDenied is a request that the server could not have signed; the
// message is safe to show the client.
type errDenied string

func (e errDenied) Error() string { return string(e) }

// scope checks a SigV4 credential ("<key>/<yyyymmdd>/<region>/s3/aws4_request")
// and returns its day.
func (s signer) scope(credential string) (string, error) {
	parts := strings.Split(credential, "/")
	if len(parts) != 5 || parts[3] != "s3" || parts[4] != "aws4_request" {
		return "", errDenied("malformed credential")
	}
	if parts[0] != s.accessKeyID || parts[2] != s.region {
		return "", errDenied("the request is not signed for this storage")
	}
	if _, err := time.Parse("20060102", parts[1]); err != nil {
		return "", errDenied("malformed credential date")
	}
	return parts[1], nil
}

// checkPolicySignature verifies a POST policy form's signature: the hex
// HMAC of the base64 policy under the day's signing key.
func (s signer) checkPolicySignature(algorithm, credential, policy, signature string) error {
	if algorithm != sigAlgorithm {
		return errDenied("unsupported signing algorithm")
	}
	day, err := s.scope(credential)
	if err != nil {
		return err
	}
	got, err := hex.DecodeString(signature)
	if err != nil || len(got) != sha256.Size {
		return errDenied("malformed signature")
	}
	if !hmac.Equal(got, s3store.PolicySignature(s.secret, day, s.region, policy)) {
		return errDenied("the form's signature does not match")
	}
	return nil
}

// queryAuthParams are the SigV4 query parameters of a presigned request.
var queryAuthParams = []string{
	"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date",
	"X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature",
}

// checkQuery checks what a presigned request's query says about itself —
// that it is for this server's key and region, and has not expired —
// without verifying the signature, which the server does. That turns away
// at the door what can only have been forged, guessed or kept too long.
func (s signer) checkQuery(q url.Values) error {
	for _, name := range queryAuthParams {
		if len(q[name]) != 1 {
			return errDenied("malformed presigned request: " + name)
		}
	}
	if q.Get("X-Amz-Algorithm") != sigAlgorithm {
		return errDenied("unsupported signing algorithm")
	}
	day, err := s.scope(q.Get("X-Amz-Credential"))
	if err != nil {
		return err
	}
	date, err := time.Parse(amzDate, q.Get("X-Amz-Date"))
	if err != nil || date.Format("20060102") != day {
		return errDenied("malformed presigned request: X-Amz-Date")
	}
	secs, err := strconv.Atoi(q.Get("X-Amz-Expires"))
	if err != nil || secs <= 0 || time.Duration(secs)*time.Second > maxPresignedTTL {
		return errDenied("malformed presigned request: X-Amz-Expires")
	}
	t := now()
	if date.After(t.Add(maxClockSkew)) {
		return errDenied("the request is signed in the future")
	}
	if !t.Before(date.Add(time.Duration(secs) * time.Second)) {
		return errDenied("the presigned request has expired")
	}
	if sig, err := hex.DecodeString(q.Get("X-Amz-Signature")); err != nil || len(sig) != sha256.Size {
		return errDenied("malformed signature")
	}
	if !signsHost(q.Get("X-Amz-SignedHeaders")) {
		return errDenied("malformed presigned request: X-Amz-SignedHeaders")
	}
	return nil
}

func signsHost(signed string) bool {
	for h := range strings.SplitSeq(signed, ";") {
		if h == "host" {
			return true
		}
	}
	return false
}
