package s3store

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/caddyupload/caddyupload/storage"
)

// deleteBatch is the most keys one DeleteObjects request may name.
const deleteBatch = 1000

// Head returns the size, type, ETag (unquoted) and, when the server keeps a
// full-object SHA-256, that checksum.
func (s *Store) Head(ctx context.Context, key string) (storage.ObjectInfo, error) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket:       &s.bucket,
		Key:          &key,
		ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		if notFound(err, "NotFound", "NoSuchKey") {
			return storage.ObjectInfo{}, s.missingObject(ctx)
		}
		return storage.ObjectInfo{}, unavailable("head", err)
	}
	info := storage.ObjectInfo{
		Size:        aws.ToInt64(out.ContentLength),
		ContentType: aws.ToString(out.ContentType),
		ETag:        unquote(aws.ToString(out.ETag)),
	}
	for _, h := range []struct {
		name string
		set  bool
	}{
		{"Content-Encoding", aws.ToString(out.ContentEncoding) != ""},
		{"Content-Disposition", aws.ToString(out.ContentDisposition) != ""},
		{"Content-Language", aws.ToString(out.ContentLanguage) != ""},
		{"Expires", aws.ToString(out.ExpiresString) != ""},
	} {
		if h.set {
			info.Served = append(info.Served, h.name)
		}
	}
	// A composite checksum (multipart) is not the digest of the object.
	if out.ChecksumSHA256 != nil && out.ChecksumType != types.ChecksumTypeComposite {
		if sum, err := base64.StdEncoding.DecodeString(*out.ChecksumSHA256); err == nil && len(sum) == 32 {
			info.SHA256 = sum
		}
	}
	return info, nil
}

// Delete removes keys in batches of deleteBatch; missing keys are not an
// error.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	switch len(keys) {
	case 0:
		return nil
	case 1:
		_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &keys[0]})
		if err != nil && !notFound(err, "NoSuchKey", "NotFound") {
			return unavailable("delete", err)
		}
		return nil
	}
	for start := 0; start < len(keys); start += deleteBatch {
		batch := keys[start:min(start+deleteBatch, len(keys))]
		ids := make([]types.ObjectIdentifier, len(batch))
		for i := range batch {
			ids[i].Key = &batch[i]
		}
		out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: &s.bucket,
			Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
		})
		if err != nil {
			return unavailable("delete", err)
		}
		for _, e := range out.Errors {
			if aws.ToString(e.Code) == "NoSuchKey" {
				continue
			}
			return fmt.Errorf("s3 delete: %w: %d of %d keys failed, first %s: %s",
				storage.ErrUnavailable, len(out.Errors), len(batch), aws.ToString(e.Code), aws.ToString(e.Message))
		}
	}
	return nil
}

// missingObject tells a missing object from a missing bucket after a HEAD
// answered 404 (HEAD answers have no body to name the code): a bucket that
// is gone is a broken backend, not an upload that has not happened yet.
func (s *Store) missingObject(ctx context.Context) error {
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket})
	switch {
	case err == nil:
		return storage.ErrNotFound
	case notFound(err, "NotFound", "NoSuchBucket"):
		return fmt.Errorf("s3 head: %w: bucket %s does not exist", storage.ErrUnavailable, s.bucket)
	default:
		return unavailable("head bucket", err)
	}
}

func unquote(etag string) string { return strings.Trim(etag, `"`) }
