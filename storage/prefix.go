package storage

import "context"

// PrefixReader is an optional capability of an ObjectStore: reading the
// first bytes of an object without transferring the rest, so that a
// completion can check what a file really is (its magic bytes, an image's
// dimensions) at a cost that does not grow with the file.
type PrefixReader interface {
	ObjectStore
	// ReadPrefix returns the first n bytes of the object at key, or all of
	// it when it is shorter. When etag is not empty the read only succeeds
	// while the object still has that (unquoted) ETag: bytes read after a
	// replacement would belong to another object than the one verified;
	// a changed object is ErrConflict. A missing object is ErrNotFound.
	ReadPrefix(ctx context.Context, key string, n int64, etag string) ([]byte, error)
}
