package s3store

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// now is the signing clock; tests replace it.
var now = time.Now

// unsignedPayload: the body is not part of the signature; its length, type
// and checksum are, through the signed headers.
const unsignedPayload = "UNSIGNED-PAYLOAD"

// maxPartSize is the S3 limit for one part (and one PUT).
const maxPartSize = 5 << 30

// PresignPut signs a single PUT whose Content-Length, Content-Type and, when
// in.SHA256 is set, x-amz-checksum-sha256 the server checks against the
// signature, so a body of another length, type or content is refused. With
// in.IfNoneMatch, If-None-Match: * is signed too: the URL creates the object
// once and can never overwrite it.
func (s *Store) PresignPut(ctx context.Context, in storage.PutInput, origin storage.Origin) (storage.SignedRequest, error) {
	if err := checkKey(in.Key); err != nil {
		return storage.SignedRequest{}, err
	}
	if in.Size <= 0 || in.Size > maxPartSize {
		return storage.SignedRequest{}, fmt.Errorf("s3: put size %d out of range 1..%d", in.Size, int64(maxPartSize))
	}
	if in.ContentType == "" {
		return storage.SignedRequest{}, errors.New("s3: put needs a content type")
	}
	if in.SHA256 != nil && len(in.SHA256) != 32 {
		return storage.SignedRequest{}, errors.New("s3: sha256 must be 32 bytes")
	}
	ttl, err := checkTTL(in.TTL)
	if err != nil {
		return storage.SignedRequest{}, err
	}
	size := strconv.FormatInt(in.Size, 10)
	out := map[string]string{"Content-Type": in.ContentType, "Content-Length": size}
	sig := sigInput{method: http.MethodPut, t: s.targetFor(origin), key: in.Key, ttl: ttl,
		length: in.Size, contentType: in.ContentType}
	if in.SHA256 != nil {
		sum := base64.StdEncoding.EncodeToString(in.SHA256)
		sig.checksum = sum
		out["X-Amz-Checksum-Sha256"] = sum
	}
	if in.IfNoneMatch {
		sig.ifNoneMatch = true
		out["If-None-Match"] = "*"
	}
	signed, exp, err := s.presign(ctx, &sig)
	if err != nil {
		return storage.SignedRequest{}, err
	}
	return storage.SignedRequest{Method: http.MethodPut, URL: signed, Headers: out, Expires: exp}, nil
}

// PresignPart signs the upload of one part. A positive in.Size is signed as
// Content-Length and in.SHA256 as x-amz-checksum-sha256, so a part of
// another length or content is refused.
func (s *Store) PresignPart(ctx context.Context, in storage.PartInput, origin storage.Origin) (storage.SignedRequest, error) {
	if err := checkKey(in.Key); err != nil {
		return storage.SignedRequest{}, err
	}
	if in.UploadID == "" {
		return storage.SignedRequest{}, errors.New("s3: part needs an upload id")
	}
	if in.Number < 1 || in.Number > 10000 {
		return storage.SignedRequest{}, fmt.Errorf("s3: part number %d out of range 1..10000", in.Number)
	}
	if in.Size < 0 || in.Size > maxPartSize {
		return storage.SignedRequest{}, fmt.Errorf("s3: part size %d out of range 0..%d", in.Size, int64(maxPartSize))
	}
	if in.SHA256 != nil && len(in.SHA256) != 32 {
		return storage.SignedRequest{}, errors.New("s3: sha256 must be 32 bytes")
	}
	ttl, err := checkTTL(in.TTL)
	if err != nil {
		return storage.SignedRequest{}, err
	}
	sig := sigInput{method: http.MethodPut, t: s.targetFor(origin), key: in.Key, ttl: ttl,
		length: in.Size, partNumber: in.Number, uploadID: in.UploadID}
	out := map[string]string{}
	if in.Size > 0 {
		out["Content-Length"] = strconv.FormatInt(in.Size, 10)
	}
	if in.SHA256 != nil {
		sig.checksum = base64.StdEncoding.EncodeToString(in.SHA256)
		out["X-Amz-Checksum-Sha256"] = sig.checksum
	}
	signed, exp, err := s.presign(ctx, &sig)
	if err != nil {
		return storage.SignedRequest{}, err
	}
	if len(out) == 0 {
		out = nil
	}
	return storage.SignedRequest{Method: http.MethodPut, URL: signed, Headers: out, Expires: exp}, nil
}

// PresignGet signs a download; the response-content-* overrides are part of
// the signed query, so a client cannot change them.
func (s *Store) PresignGet(ctx context.Context, in storage.GetInput, origin storage.Origin) (storage.SignedRequest, error) {
	if err := checkKey(in.Key); err != nil {
		return storage.SignedRequest{}, err
	}
	ttl, err := checkTTL(in.TTL)
	if err != nil {
		return storage.SignedRequest{}, err
	}
	signed, exp, err := s.presign(ctx, &sigInput{method: http.MethodGet, t: s.targetFor(origin), key: in.Key, ttl: ttl,
		respCache: in.CacheControl, respDisp: in.ContentDisposition, respType: in.ContentType})
	if err != nil {
		return storage.SignedRequest{}, err
	}
	return storage.SignedRequest{Method: http.MethodGet, URL: signed, Expires: exp}, nil
}

// presign signs in with SigV4 in the query string.
func (s *Store) presign(ctx context.Context, in *sigInput) (string, time.Time, error) {
	creds, err := s.creds.Retrieve(ctx)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("s3: credentials: %w: %v", storage.ErrUnavailable, err)
	}
	t := now().UTC().Truncate(time.Second)
	return s.presignURL(in, t, creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken), t.Add(in.ttl), nil
}

// checkTTL applies the default to zero and refuses what SigV4 cannot sign.
// Lifetimes are whole seconds, rounded up.
func checkTTL(ttl time.Duration) (time.Duration, error) {
	if ttl == 0 {
		return defaultTTL, nil
	}
	if ttl < 0 || ttl > maxTTL {
		return 0, fmt.Errorf("s3: url lifetime %s out of range (0, %s]", ttl, maxTTL)
	}
	return (ttl + time.Second - 1).Truncate(time.Second), nil
}
