// Package storage holds the object-store and ledger interfaces of caddyupload
// and nothing that depends on Caddy, so that every backend can be built and
// tested alone and checked by one conformance suite (package storagetest).
package storage

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// Errors every backend maps its own failures onto, so that the HTTP layer can
// answer with the documented status without knowing the backend.
var (
	// ErrNotFound: the object, multipart upload or record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable wraps a failure to reach the backend or an unexpected
	// answer from it; nothing may be recorded as confirmed after it.
	ErrUnavailable = errors.New("storage unavailable")
	// ErrInvalidPart: a multipart completion named a part that is not stored
	// or whose ETag does not match.
	ErrInvalidPart = errors.New("invalid part")
	// ErrConflict: an update lost a race with another writer.
	ErrConflict = errors.New("conflict")
)

// SignedRequest is a presigned request handed to a client. Method and URL
// are what it must call, Headers every header it must send exactly as given
// (they are part of the signature), Fields the form fields of a POST policy
// (the file field goes last).
type SignedRequest struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
	Fields  map[string]string `json:"fields,omitempty"`
	Expires time.Time         `json:"expires_at"`
}

// PutInput describes a single-object upload to presign. The storage server
// refuses any body whose length, Content-Type or checksum differs.
type PutInput struct {
	Key         string
	Size        int64
	ContentType string
	// SHA256 is the optional raw (32-byte) digest of the body; when set it
	// is signed into the request as x-amz-checksum-sha256.
	SHA256 []byte
	// IfNoneMatch signs If-None-Match: *, so that the request creates the
	// object and fails (412) when it exists: a URL cannot replace what was
	// uploaded and confirmed through it.
	IfNoneMatch bool
	TTL         time.Duration
}

// PostInput describes a browser form upload (S3 POST policy).
type PostInput struct {
	Key     string
	MinSize int64
	MaxSize int64
	// ContentType is required exactly when set; ContentTypePrefix (e.g.
	// "image/") is the starts-with condition used when it is empty.
	ContentType       string
	ContentTypePrefix string
	TTL               time.Duration
}

// GetInput describes a presigned download.
type GetInput struct {
	Key string
	// CacheControl, ContentDisposition and ContentType override the
	// response headers (response-cache-control, -content-disposition,
	// -content-type), whatever is stored with the object.
	CacheControl       string
	ContentDisposition string
	ContentType        string
	TTL                time.Duration
}

// PartInput describes one part of a multipart upload to presign.
type PartInput struct {
	Key      string
	UploadID string
	Number   int32
	// Size is the exact part length to sign; 0 leaves the length unsigned
	// (Uppy chooses its own part size), in which case the size policy is
	// enforced at completion from the stored parts.
	Size int64
	// SHA256 is the optional raw (32-byte) digest of the part; when set it
	// is signed as x-amz-checksum-sha256, so storage refuses other bytes.
	SHA256 []byte
	TTL    time.Duration
}

// ObjectInfo is what HEAD tells about a stored object.
type ObjectInfo struct {
	Size        int64
	ContentType string
	ETag        string
	// SHA256 is the stored full-object checksum (raw bytes) when the server
	// reports one.
	SHA256 []byte
	// Served lists the response headers stored with the object that a
	// download would serve as they are and that uploads never set:
	// Content-Encoding, Content-Disposition, Content-Language, Expires. A
	// client that sent them unsigned with its PUT made storage keep them.
	// (Cache-Control, which browsers send on their own, is overridden at
	// download instead.)
	Served []string
}

// Part is a stored part of a multipart upload. ETags are kept unquoted.
type Part struct {
	Number int32  `json:"number"`
	ETag   string `json:"etag"`
	Size   int64  `json:"size,omitempty"`
}

// MultipartUpload is an incomplete multipart upload found in the bucket.
type MultipartUpload struct {
	Key       string
	UploadID  string
	Initiated time.Time
}

// ObjectStore is an S3-compatible bucket. Keys passed in are always chosen
// by the module, never by a client.
type ObjectStore interface {
	// ID names the bucket stably (backend, endpoint and bucket), so that a
	// ledger record can tell which store its key lives in.
	ID() string

	// Presigning is local computation: no request reaches the server.
	PresignPut(ctx context.Context, in PutInput, origin Origin) (SignedRequest, error)
	PresignPost(ctx context.Context, in PostInput, origin Origin) (SignedRequest, error)
	PresignGet(ctx context.Context, in GetInput, origin Origin) (SignedRequest, error)
	PresignPart(ctx context.Context, in PartInput, origin Origin) (SignedRequest, error)
	// SupportsPost reports whether the backend accepts POST policy uploads
	// (Cloudflare R2 does not).
	SupportsPost() bool

	// Head returns ErrNotFound when the object does not exist.
	Head(ctx context.Context, key string) (ObjectInfo, error)
	// Delete removes the objects; keys that do not exist are not an error.
	Delete(ctx context.Context, keys ...string) error

	CreateMultipart(ctx context.Context, key, contentType string) (uploadID string, err error)
	// ListParts returns ErrNotFound when the upload does not exist.
	ListParts(ctx context.Context, key, uploadID string) ([]Part, error)
	CompleteMultipart(ctx context.Context, key, uploadID string, parts []Part) error
	// AbortMultipart succeeds when the upload is already gone.
	AbortMultipart(ctx context.Context, key, uploadID string) error
	// ListMultipartUploads lists incomplete uploads whose key has prefix.
	ListMultipartUploads(ctx context.Context, prefix string) ([]MultipartUpload, error)
}

// SiteServed is an optional capability of an ObjectStore that clients reach
// through the site serving the upload API (an embedded server proxied by
// Caddy): its presigned URLs must carry the origin the browser used.
type SiteServed interface {
	ObjectStore
	// ServedBySite reports whether presigned URLs use the request's origin.
	ServedBySite() bool
}

// Origin is the scheme and host the client reaches object storage through,
// when that depends on the request (an embedded server routed through the
// site that serves the API). The zero value means the store's own endpoint.
type Origin struct {
	Scheme string
	Host   string
}

// OriginFromRequest is the origin a browser used for r.
func OriginFromRequest(r *http.Request) Origin {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return Origin{Scheme: scheme, Host: r.Host}
}
