package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/caddyupload/caddyupload/storage"
)

// ReadPrefix reads the first n bytes of key with a ranged GET
// ("Range: bytes=0-(n-1)"), bound to etag with If-Match when it is set.
func (s *Store) ReadPrefix(ctx context.Context, key string, n int64, etag string) ([]byte, error) {
	if n <= 0 {
		return nil, fmt.Errorf("s3 read prefix: length %d must be positive", n)
	}
	in := &s3.GetObjectInput{
		Bucket: &s.bucket,
		Key:    &key,
		Range:  aws.String("bytes=0-" + strconv.FormatInt(n-1, 10)),
	}
	if etag != "" {
		in.IfMatch = aws.String(`"` + etag + `"`)
	}
	out, err := s.client.GetObject(ctx, in)
	switch {
	case err == nil:
	case errorCode(err) == "InvalidRange" || httpStatus(err) == 416:
		// No byte 0: the object is empty.
		return []byte{}, nil
	case errorCode(err) == "PreconditionFailed" || httpStatus(err) == 412:
		return nil, fmt.Errorf("s3 read prefix: %w: the object no longer has ETag %s", storage.ErrConflict, etag)
	case notFound(err, "NoSuchKey", "NotFound"):
		return nil, storage.ErrNotFound
	default:
		return nil, unavailable("read prefix", err)
	}
	defer out.Body.Close()
	// A server that ignores Range answers 200 with the whole object: read
	// no more than asked for and drop the connection with the rest.
	b, err := io.ReadAll(io.LimitReader(out.Body, n))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, unavailable("read prefix", err)
	}
	return b, nil
}

var _ storage.PrefixReader = (*Store)(nil)

// ReadRange streams key, or the range rng of it, with one GET bound to
// etag with If-Match when it is set.
func (s *Store) ReadRange(ctx context.Context, key, rng, etag string) (*storage.ObjectBody, error) {
	in := &s3.GetObjectInput{Bucket: &s.bucket, Key: &key}
	if rng != "" {
		in.Range = aws.String(rng)
	}
	if etag != "" {
		in.IfMatch = aws.String(`"` + etag + `"`)
	}
	out, err := s.client.GetObject(ctx, in)
	switch {
	case err == nil:
	case errorCode(err) == "InvalidRange" || httpStatus(err) == 416:
		return nil, storage.ErrInvalidRange
	case errorCode(err) == "PreconditionFailed" || httpStatus(err) == 412:
		return nil, fmt.Errorf("s3 read range: %w: the object no longer has ETag %s", storage.ErrConflict, etag)
	case notFound(err, "NoSuchKey", "NotFound"):
		return nil, storage.ErrNotFound
	default:
		return nil, unavailable("read range", err)
	}
	return &storage.ObjectBody{Body: out.Body, Length: aws.ToInt64(out.ContentLength), ContentRange: aws.ToString(out.ContentRange)}, nil
}
