package s3store

import (
	"context"
	"errors"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/caddyupload/caddyupload/storage"
)

// CreateMultipart starts a multipart upload; contentType becomes the type of
// the completed object.
func (s *Store) CreateMultipart(ctx context.Context, key, contentType string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	in := &s3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: &key}
	if contentType != "" {
		in.ContentType = &contentType
	}
	out, err := s.client.CreateMultipartUpload(ctx, in)
	if err != nil {
		return "", unavailable("create multipart", err)
	}
	if aws.ToString(out.UploadId) == "" {
		return "", unavailable("create multipart", errors.New("no upload id in the answer"))
	}
	return *out.UploadId, nil
}

// ListParts returns every stored part in number order, ETags unquoted.
func (s *Store) ListParts(ctx context.Context, key, uploadID string) ([]storage.Part, error) {
	p := s3.NewListPartsPaginator(s.client, &s3.ListPartsInput{Bucket: &s.bucket, Key: &key, UploadId: &uploadID})
	var parts []storage.Part
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			if notFound(err, "NoSuchUpload") {
				return nil, storage.ErrNotFound
			}
			return nil, unavailable("list parts", err)
		}
		for _, part := range page.Parts {
			parts = append(parts, storage.Part{
				Number: aws.ToInt32(part.PartNumber),
				ETag:   unquote(aws.ToString(part.ETag)),
				Size:   aws.ToInt64(part.Size),
			})
		}
	}
	slices.SortFunc(parts, func(a, b storage.Part) int { return int(a.Number - b.Number) })
	return parts, nil
}

// CompleteMultipart assembles the parts, given in any order, with quoted or
// unquoted ETags. A part that is not stored, has another ETag or is too
// small to be followed by others is ErrInvalidPart.
func (s *Store) CompleteMultipart(ctx context.Context, key, uploadID string, parts []storage.Part) error {
	if len(parts) == 0 {
		return storage.ErrInvalidPart
	}
	sorted := slices.Clone(parts)
	slices.SortFunc(sorted, func(a, b storage.Part) int { return int(a.Number - b.Number) })
	done := make([]types.CompletedPart, len(sorted))
	for i, p := range sorted {
		done[i] = types.CompletedPart{
			PartNumber: aws.Int32(p.Number),
			ETag:       aws.String(`"` + unquote(p.ETag) + `"`),
		}
	}
	_, err := s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          &s.bucket,
		Key:             &key,
		UploadId:        &uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: done},
	})
	if err != nil {
		switch errorCode(err) {
		case "InvalidPart", "InvalidPartOrder", "EntityTooSmall":
			return storage.ErrInvalidPart
		case "NoSuchUpload":
			return storage.ErrNotFound
		}
		return unavailable("complete multipart", err)
	}
	return nil
}

// AbortMultipart discards the upload and its parts; an upload that is
// already gone counts as aborted.
func (s *Store) AbortMultipart(ctx context.Context, key, uploadID string) error {
	_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &key, UploadId: &uploadID})
	if err != nil && !notFound(err, "NoSuchUpload") {
		return unavailable("abort multipart", err)
	}
	return nil
}

// ListMultipartUploads lists the incomplete uploads under prefix.
func (s *Store) ListMultipartUploads(ctx context.Context, prefix string) ([]storage.MultipartUpload, error) {
	in := &s3.ListMultipartUploadsInput{Bucket: &s.bucket}
	if prefix != "" {
		in.Prefix = &prefix
	}
	p := s3.NewListMultipartUploadsPaginator(s.client, in)
	var ups []storage.MultipartUpload
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, unavailable("list multipart uploads", err)
		}
		for _, u := range page.Uploads {
			ups = append(ups, storage.MultipartUpload{
				Key:       aws.ToString(u.Key),
				UploadID:  aws.ToString(u.UploadId),
				Initiated: aws.ToTime(u.Initiated),
			})
		}
	}
	return ups, nil
}
