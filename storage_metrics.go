package caddyupload

import (
	"context"
	"errors"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// meteredStore measures every call of the handler to its object store in
// one place: caddy_upload_storage_duration_seconds and
// caddy_upload_storage_errors_total, by operation.
type meteredStore struct {
	storage.ObjectStore
	route string
}

// meteredPrefixStore is a meteredStore of a store that can read an
// object's first bytes: the capability stays visible through the wrapper
// only when the store has it.
type meteredPrefixStore struct {
	meteredStore
	pr storage.PrefixReader
}

// instrumentStore wraps s so that its calls are measured under route.
func instrumentStore(s storage.ObjectStore, route string) storage.ObjectStore {
	m := meteredStore{ObjectStore: s, route: route}
	if pr, ok := s.(storage.PrefixReader); ok {
		return meteredPrefixStore{meteredStore: m, pr: pr}
	}
	return m
}

// unwrapStore returns the store a meteredStore wraps, or s itself.
func unwrapStore(s storage.ObjectStore) storage.ObjectStore {
	switch m := s.(type) {
	case meteredStore:
		return m.ObjectStore
	case meteredPrefixStore:
		return m.ObjectStore
	}
	return s
}

// observe records one call that started at start and ended with err. A
// missing object, an object that changed under a conditional read, or the
// caller going away is an answer, not a failure of storage.
func (s meteredStore) observe(op string, start time.Time, err error) {
	uploadMetrics.storageDuration.WithLabelValues(s.route, op).Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrConflict) && !errors.Is(err, context.Canceled) {
		uploadMetrics.storageErrors.WithLabelValues(s.route, op).Inc()
	}
}

// ServedBySite keeps the SiteServed capability: false when the store has
// none, which is what the capability's absence means.
func (s meteredStore) ServedBySite() bool {
	ss, ok := s.ObjectStore.(storage.SiteServed)
	return ok && ss.ServedBySite()
}

func (s meteredStore) PresignPut(ctx context.Context, in storage.PutInput, o storage.Origin) (storage.SignedRequest, error) {
	start := time.Now()
	sr, err := s.ObjectStore.PresignPut(ctx, in, o)
	s.observe("presign_put", start, err)
	return sr, err
}

func (s meteredStore) PresignPost(ctx context.Context, in storage.PostInput, o storage.Origin) (storage.SignedRequest, error) {
	start := time.Now()
	sr, err := s.ObjectStore.PresignPost(ctx, in, o)
	s.observe("presign_post", start, err)
	return sr, err
}

func (s meteredStore) PresignGet(ctx context.Context, in storage.GetInput, o storage.Origin) (storage.SignedRequest, error) {
	start := time.Now()
	sr, err := s.ObjectStore.PresignGet(ctx, in, o)
	s.observe("presign_get", start, err)
	return sr, err
}

func (s meteredStore) PresignPart(ctx context.Context, in storage.PartInput, o storage.Origin) (storage.SignedRequest, error) {
	start := time.Now()
	sr, err := s.ObjectStore.PresignPart(ctx, in, o)
	s.observe("presign_part", start, err)
	return sr, err
}

func (s meteredStore) Head(ctx context.Context, key string) (storage.ObjectInfo, error) {
	start := time.Now()
	info, err := s.ObjectStore.Head(ctx, key)
	s.observe("head", start, err)
	return info, err
}

func (s meteredStore) Delete(ctx context.Context, keys ...string) error {
	start := time.Now()
	err := s.ObjectStore.Delete(ctx, keys...)
	s.observe("delete", start, err)
	return err
}

func (s meteredStore) CreateMultipart(ctx context.Context, key, contentType string) (string, error) {
	start := time.Now()
	id, err := s.ObjectStore.CreateMultipart(ctx, key, contentType)
	s.observe("create_multipart", start, err)
	return id, err
}

func (s meteredStore) ListParts(ctx context.Context, key, uploadID string) ([]storage.Part, error) {
	start := time.Now()
	parts, err := s.ObjectStore.ListParts(ctx, key, uploadID)
	s.observe("list_parts", start, err)
	return parts, err
}

func (s meteredStore) CompleteMultipart(ctx context.Context, key, uploadID string, parts []storage.Part) error {
	start := time.Now()
	err := s.ObjectStore.CompleteMultipart(ctx, key, uploadID, parts)
	s.observe("complete_multipart", start, err)
	return err
}

func (s meteredStore) AbortMultipart(ctx context.Context, key, uploadID string) error {
	start := time.Now()
	err := s.ObjectStore.AbortMultipart(ctx, key, uploadID)
	s.observe("abort_multipart", start, err)
	return err
}

func (s meteredStore) ListMultipartUploads(ctx context.Context, prefix string) ([]storage.MultipartUpload, error) {
	start := time.Now()
	ups, err := s.ObjectStore.ListMultipartUploads(ctx, prefix)
	s.observe("list_multipart_uploads", start, err)
	return ups, err
}

func (s meteredPrefixStore) ReadPrefix(ctx context.Context, key string, n int64, etag string) ([]byte, error) {
	start := time.Now()
	b, err := s.pr.ReadPrefix(ctx, key, n, etag)
	s.observe("read_prefix", start, err)
	return b, err
}

func (s meteredPrefixStore) ReadRange(ctx context.Context, key, rng, etag string) (*storage.ObjectBody, error) {
	start := time.Now()
	b, err := s.pr.ReadRange(ctx, key, rng, etag)
	s.observe("read_range", start, err)
	return b, err
}

var (
	_ storage.ObjectStore  = meteredStore{}
	_ storage.SiteServed   = meteredStore{}
	_ storage.PrefixReader = meteredPrefixStore{}
)
