package storage

import (
	"context"
	"errors"
	"io"
)

// PrefixReader is an optional capability of an ObjectStore: reading part
// of an object without transferring the rest, so that a completion can
// check what a file really is (its magic bytes, an image's dimensions) at a
// cost that does not grow with the file, and a download link can serve a
// byte range.
type PrefixReader interface {
	ObjectStore
	// ReadPrefix returns the first n bytes of the object at key, or all of
	// it when it is shorter. When etag is not empty the read only succeeds
	// while the object still has that (unquoted) ETag: bytes read after a
	// replacement would belong to another object than the one verified;
	// a changed object is ErrConflict. A missing object is ErrNotFound.
	ReadPrefix(ctx context.Context, key string, n int64, etag string) ([]byte, error)
	// ReadRange streams the object at key, or the byte range rng names (an
	// HTTP Range header value; "" reads it all), bound to etag as in
	// ReadPrefix. A range the object cannot satisfy is ErrInvalidRange.
	// The caller closes the body.
	ReadRange(ctx context.Context, key, rng, etag string) (*ObjectBody, error)
}

// ObjectBody is an object, or a range of it, being read.
type ObjectBody struct {
	Body io.ReadCloser
	// Length is how many bytes Body holds.
	Length int64
	// ContentRange is set, as in an HTTP answer ("bytes 0-99/1000"), when
	// a range was read.
	ContentRange string
}

// ErrInvalidRange is a Range the object cannot satisfy.
var ErrInvalidRange = errors.New("range not satisfiable")
