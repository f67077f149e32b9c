package caddyupload

import (
	"fmt"
	"strings"
	"testing"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

// TestStorageDown: Caddy starts while the bucket is unreachable (nothing
// is called at provision), create still answers (presigning is local and
// the record is written), and complete answers 503 storage_unavailable
// without confirming anything; a multipart create, which must call
// storage, answers 503 too.
func TestStorageDown(t *testing.T) {
	s := newSite(t, oneServer(t))
	dead := fmt.Sprintf("http://127.0.0.1:%d", realservers.FreePort(t))
	s.load(strings.Replace(s.caddyfile(""), "endpoint "+s.s3.Endpoint, "endpoint "+dead, 1))
	c := s.create("alice", "a.txt", 3, "text/plain")
	expectError(t, s.call("alice", "POST", "/"+c.ID+"/complete", nil, nil), 503, "storage_unavailable")
	expectError(t, s.call("alice", "DELETE", "/"+c.ID, nil, nil), 503, "storage_unavailable")
	var rec record
	s.call("alice", "GET", "/"+c.ID, nil, &rec)
	if rec.Status == "confirmed" {
		t.Fatal("confirmed while storage was down")
	}
	// A multipart create must start the upload in storage: it fails cleanly.
	big := s.call("alice", "POST", "/", map[string]any{"filename": "b.bin", "size": 200 << 20, "type": "application/octet-stream"}, nil)
	expectError(t, big, 503, "storage_unavailable")
}
