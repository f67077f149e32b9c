package caddyupload

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"

	"github.com/caddyupload/caddyupload/storage"
)

// TestSweeperAbortsMultipart covers both ways a multipart upload is
// abandoned: a record left pending past its deadline, and an upload no
// record knows (its ledger entry lost). A foreign upload in the same
// bucket survives.
func TestSweeperAbortsMultipart(t *testing.T) {
	s := newSite(t, oneServer(t))
	s.load(s.caddyfile("url_ttl 1s\n pending_ttl 2s\n sweep_interval 1s\n multipart_threshold 5MiB\n part_size 5MiB"))
	c := s.create("alice", "big.bin", 6<<20, "application/octet-stream")
	if c.Multipart == nil {
		t.Fatal("not multipart")
	}
	orphanKey := uuid.NewString() + ".bin"
	orphan := s.startMultipart(orphanKey)
	foreign := s.startMultipart("canary/" + uuid.NewString() + ".bin")

	eventually(t, "pending multipart upload expired", func() bool {
		var rec record
		s.call("alice", "GET", "/"+c.ID, nil, &rec)
		return rec.Status == "expired"
	})
	eventually(t, "orphaned multipart upload aborted", func() bool { return !s.multipartExists(orphanKey, orphan) })
	if !s.multipartExists("", foreign) {
		t.Error("the sweeper aborted a multipart upload it did not start")
	}
	eventually(t, "the expired record's multipart upload aborted", func() bool { return !s.multipartExists(c.Key, "") })
}

func (s *testSite) startMultipart(key string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := s.s3.Client().CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		s.t.Fatal(err)
	}
	return *out.UploadId
}

// multipartExists reports whether an open upload matches key ("" = any)
// and uploadID ("" = any).
func (s *testSite) multipartExists(key, uploadID string) bool {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := s.s3.Client().ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &s.bucket})
	if err != nil {
		s.t.Fatal(err)
	}
	for _, u := range out.Uploads {
		if (key == "" || *u.Key == key) && (uploadID == "" || *u.UploadId == uploadID) {
			return true
		}
	}
	return false
}

// The orphan scan does not trust the storage server's clock: an upload
// whose Initiated time looks old (a server clock running behind, here the
// scan's clock running ahead) is aborted only once this process has itself
// seen it for the pending TTL.
func TestOrphanScanKeepsItsOwnClock(t *testing.T) {
	s := newSite(t, oneServer(t))
	s.load(s.caddyfile("url_ttl 1s\n pending_ttl 1s\n sweep_interval 1s\n multipart_threshold 5MiB"))
	handlers := make(chan *Handler, 1)
	hook := func(h *Handler, _ []*storage.Record) {
		select {
		case handlers <- h:
		default:
		}
	}
	afterSweepList.Store(&hook)
	t.Cleanup(func() { afterSweepList.Store(nil) })
	s.create("alice", "due.txt", 4, "text/plain") // gives the sweeper something to list
	h := <-handlers
	afterSweepList.Store(nil)

	key := uuid.NewString() + ".bin"
	id := s.startMultipart(key)
	later := time.Now().Add(3 * time.Hour)
	if n, err := h.sweepOrphans(t.Context(), later); err != nil || n != 0 || !s.multipartExists(key, id) {
		t.Fatalf("first sighting: aborted %d (%v); a server clock 3h behind made a new upload look abandoned", n, err)
	}
	if n, err := h.sweepOrphans(t.Context(), later.Add(2*time.Second)); err != nil || n != 1 || s.multipartExists(key, id) {
		t.Fatalf("after the pending TTL by this clock: aborted %d (%v)", n, err)
	}
}
