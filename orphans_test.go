package caddyupload

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
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
	if s.multipartExists(c.Key, "") {
		t.Error("the expired record's multipart upload is still open")
	}
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
