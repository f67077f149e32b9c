package s3store

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/caddyupload/caddyupload/internal/realservers"
	"github.com/caddyupload/caddyupload/storage"
)

// rangeRecorder records the GET requests the store sends and the lengths
// the server answered them with.
type rangeRecorder struct {
	mu     sync.Mutex
	gets   []string // Range header of each GET
	status []int
	length []int64
}

func (r *rangeRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if req.Method == http.MethodGet && err == nil {
		r.mu.Lock()
		r.gets = append(r.gets, req.Header.Get("Range"))
		r.status = append(r.status, resp.StatusCode)
		r.length = append(r.length, resp.ContentLength)
		r.mu.Unlock()
	}
	return resp, err
}

// putObject stores body at key with the server's credentials and returns
// its ETag.
func putObject(t *testing.T, srv *realservers.S3Server, s *Store, key string, body []byte) string {
	t.Helper()
	if _, err := srv.Client().PutObject(ctx(t), &s3.PutObjectInput{Bucket: aws.String(s.Bucket()), Key: &key, Body: bytes.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
	info, err := s.Head(ctx(t), key)
	if err != nil {
		t.Fatal(err)
	}
	return info.ETag
}

// TestReadPrefix: the first n bytes come from one ranged GET that the
// server answers with n bytes (206), never the whole object; shorter and
// empty objects, missing keys and replaced objects are told apart.
func TestReadPrefix(t *testing.T) {
	onBothServers(t, func(t *testing.T, srv *realservers.S3Server) {
		rec := new(rangeRecorder)
		s := storeOn(t, srv, func(c *Config) { c.HTTPClient = &http.Client{Transport: rec} })

		big := make([]byte, 1<<20)
		_, _ = rand.Read(big)
		bigTag := putObject(t, srv, s, "big", big)
		got, err := s.ReadPrefix(ctx(t), "big", 4096, bigTag)
		if err != nil || !bytes.Equal(got, big[:4096]) {
			t.Fatalf("ReadPrefix(big, 4096) = %d bytes, %v; want the first 4096", len(got), err)
		}
		rec.mu.Lock()
		if len(rec.gets) != 1 || rec.gets[0] != "bytes=0-4095" || rec.status[0] != http.StatusPartialContent || rec.length[0] != 4096 {
			t.Errorf("GETs sent %q, answered %v with lengths %v; want one ranged GET answered 206 with 4096 bytes", rec.gets, rec.status, rec.length)
		}
		rec.mu.Unlock()

		small := []byte("%PDF-1.7 short")
		putObject(t, srv, s, "small", small)
		if got, err := s.ReadPrefix(ctx(t), "small", 4096, ""); err != nil || !bytes.Equal(got, small) {
			t.Errorf("ReadPrefix(small) = %q, %v; want the whole object", got, err)
		}

		putObject(t, srv, s, "empty", nil)
		if got, err := s.ReadPrefix(ctx(t), "empty", 4096, ""); err != nil || len(got) != 0 {
			t.Errorf("ReadPrefix(empty) = %q, %v; want no bytes and no error", got, err)
		}

		if _, err := s.ReadPrefix(ctx(t), "missing", 4096, ""); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("ReadPrefix(missing) error %v, want ErrNotFound", err)
		}

		// The object was replaced after it was verified: the bytes read
		// must not pass for the verified object's.
		putObject(t, srv, s, "big", []byte("replaced"))
		if _, err := s.ReadPrefix(ctx(t), "big", 4096, bigTag); !errors.Is(err, storage.ErrConflict) {
			t.Errorf("ReadPrefix with the old ETag: %v, want ErrConflict", err)
		}
		if got, err := s.ReadPrefix(ctx(t), "big", 4096, ""); err != nil || string(got) != "replaced" {
			t.Errorf("ReadPrefix without ETag after the replacement = %q, %v", got, err)
		}

		if _, err := s.ReadPrefix(ctx(t), "big", 0, ""); err == nil || strings.Contains(err.Error(), srv.SecretKey) {
			t.Errorf("ReadPrefix(n=0) error %v, want a refusal", err)
		}
	})
}
