package s3store

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

const (
	sigAlgorithm = "AWS4-HMAC-SHA256"
	amzDate      = "20060102T150405Z"
)

// policyDoc is the POST policy. Field order is fixed so that the document
// is the same for the same input (easy to inspect and test).
type policyDoc struct {
	Expiration string `json:"expiration"`
	Conditions []any  `json:"conditions"`
}

// PresignPost writes and signs a POST policy: the exact key, the size range
// and the Content-Type (exact, or a prefix) are conditions the server checks
// against the form. Fields holds every form field to send before the file
// field, which must come last. With a ContentTypePrefix, Fields has no
// Content-Type: the client adds the file's own type (the server checks it
// starts with the prefix).
func (s *Store) PresignPost(ctx context.Context, in storage.PostInput, origin storage.Origin) (storage.SignedRequest, error) {
	if s.disablePost {
		return storage.SignedRequest{}, errors.New("s3: POST policy uploads are disabled for this bucket")
	}
	if err := checkKey(in.Key); err != nil {
		return storage.SignedRequest{}, err
	}
	if in.MinSize < 0 || in.MaxSize <= 0 || in.MinSize > in.MaxSize || in.MaxSize > maxPartSize {
		return storage.SignedRequest{}, fmt.Errorf("s3: post size range %d..%d invalid", in.MinSize, in.MaxSize)
	}
	ttl, err := checkTTL(in.TTL)
	if err != nil {
		return storage.SignedRequest{}, err
	}
	creds, err := s.creds.Retrieve(ctx)
	if err != nil {
		return storage.SignedRequest{}, fmt.Errorf("s3: credentials: %w: %v", storage.ErrUnavailable, err)
	}
	t := now().UTC().Truncate(time.Second)
	date := t.Format(amzDate)
	credential := creds.AccessKeyID + "/" + date[:8] + "/" + s.region + "/s3/aws4_request"

	typeCond := []any{"starts-with", "$Content-Type", in.ContentTypePrefix}
	if in.ContentType != "" {
		typeCond = []any{"eq", "$Content-Type", in.ContentType}
	}
	conds := []any{
		map[string]string{"bucket": s.bucket},
		[]any{"eq", "$key", in.Key},
		[]any{"content-length-range", in.MinSize, in.MaxSize},
		typeCond,
		map[string]string{"x-amz-algorithm": sigAlgorithm},
		map[string]string{"x-amz-credential": credential},
		map[string]string{"x-amz-date": date},
	}
	if creds.SessionToken != "" {
		conds = append(conds, map[string]string{"x-amz-security-token": creds.SessionToken})
	}
	exp := t.Add(ttl)
	doc, err := json.Marshal(policyDoc{Expiration: exp.Format("2006-01-02T15:04:05.000Z"), Conditions: conds})
	if err != nil {
		return storage.SignedRequest{}, fmt.Errorf("s3: post policy: %w", err)
	}
	policy := base64.StdEncoding.EncodeToString(doc)

	fields := map[string]string{
		"key":              in.Key,
		"policy":           policy,
		"x-amz-algorithm":  sigAlgorithm,
		"x-amz-credential": credential,
		"x-amz-date":       date,
		"x-amz-signature":  hex.EncodeToString(PolicySignature(creds.SecretAccessKey, date[:8], s.region, policy)),
	}
	if in.ContentType != "" {
		fields["Content-Type"] = in.ContentType
	}
	if creds.SessionToken != "" {
		fields["x-amz-security-token"] = creds.SessionToken
	}
	return storage.SignedRequest{
		Method:  http.MethodPost,
		URL:     s.targetFor(origin).bucketURL(),
		Fields:  fields,
		Expires: exp,
	}, nil
}

// PolicySignature is the SigV4 signature of a POST policy (its base64
// form) signed on day (yyyymmdd) for S3 in region: what PresignPost puts
// in x-amz-signature, and what a server that verifies forms recomputes.
func PolicySignature(secret, day, region, policy string) []byte {
	return hmacSHA256(signingKey(secret, day, region, "s3"), []byte(policy))
}

// signingKey is the SigV4 key for one day, region and service.
func signingKey(secret, day, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), []byte(day))
	k = hmacSHA256(k, []byte(region))
	k = hmacSHA256(k, []byte(service))
	return hmacSHA256(k, []byte("aws4_request"))
}

func hmacSHA256(key, data []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(data)
	return h.Sum(nil)
}
