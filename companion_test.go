package caddyupload

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

// These tests speak to the Companion-compatible routes exactly as
// @uppy/aws-s3 does; the browser tests run the real Uppy against them.

func TestCompanionSingleUpload(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		s := newSite(t, srv)
		s.load(s.caddyfile("max_size 1KiB\n types text/plain"))
		q := url.Values{"filename": {"hello.txt"}, "type": {"text/plain"}, "metadata[name]": {"hello.txt"}, "metadata[relativePath]": {"null"}}
		var p struct {
			Method string            `json:"method"`
			URL    string            `json:"url"`
			Fields map[string]string `json:"fields"`
			Key    string            `json:"key"`
			ID     string            `json:"id"`
		}
		if resp := s.call("alice", "GET", "/s3/params?"+q.Encode(), nil, &p); resp.StatusCode != 200 || p.Method != "POST" || p.Fields["key"] == "" {
			t.Fatalf("params: %d %+v", resp.StatusCode, p)
		}
		c := created{URL: p.URL, Fields: p.Fields}
		if st := postForm(t, c, []byte(strings.Repeat("x", 1025))); st < 400 {
			t.Errorf("a body over max_size was accepted by storage: %d", st)
		}
		if st := postForm(t, c, []byte("hello")); st >= 300 {
			t.Fatalf("form upload: %d", st)
		}
		expectError(t, s.call("bob", "POST", "/complete", map[string]string{"key": p.Fields["key"]}, nil), 404, "not_found")
		expectError(t, s.call("alice", "POST", "/complete", map[string]string{"key": "someone/else.txt"}, nil), 404, "not_found")
		var rec record
		if resp := s.call("alice", "POST", "/complete", map[string]string{"key": p.Fields["key"]}, &rec); resp.StatusCode != 200 || rec.Status != "confirmed" || rec.Size != 5 || rec.ID != p.ID {
			t.Fatalf("complete by key: %d %+v", resp.StatusCode, rec)
		}
		expectError(t, s.call("alice", "GET", "/s3/params?filename=x.pdf&type=application/pdf", nil, nil), 415, "unsupported_type")
	})
}

func TestCompanionMultipart(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		s := newSite(t, srv)
		s.load(s.caddyfile("max_size 12MiB"))
		create := s.uppyCreate
		upload := s.uppyParts

		key, id := create()
		expectError(t, s.call("alice", "GET", "/s3/multipart/"+id+"/1?key=other.bin", nil, nil), 404, "not_found")
		expectError(t, s.call("bob", "GET", "/s3/multipart/"+id+"/1?key="+url.QueryEscape(key), nil, nil), 404, "not_found")
		parts := upload(key, id, 5<<20, 1000)
		var listed []companionPart
		if resp := s.call("alice", "GET", "/s3/multipart/"+id+"?key="+url.QueryEscape(key), nil, &listed); resp.StatusCode != 200 || len(listed) != 2 || listed[1].Size != 1000 {
			t.Fatalf("list: %+v", listed)
		}
		// Uppy v5 sends ETags quoted, v6 unquoted: both work.
		parts[1].ETag = strings.Trim(parts[1].ETag, `"`)
		var done map[string]json.RawMessage
		if resp := s.call("alice", "POST", "/s3/multipart/"+id+"/complete?key="+url.QueryEscape(key), map[string]any{"parts": parts}, &done); resp.StatusCode != 200 {
			t.Fatalf("complete: %d", resp.StatusCode)
		}
		if !strings.HasSuffix(string(done["location"]), `/up/`+id+`/download"`) {
			t.Errorf("location %s", done["location"])
		}
		var rec record
		s.call("alice", "GET", "/"+id, nil, &rec)
		if rec.Status != "confirmed" || rec.Size != 5<<20+1000 {
			t.Errorf("record after complete: %+v", rec)
		}

		// Over the size limit: storage took the parts, completion refuses
		// them, aborts the upload and rejects the record.
		key, id = create()
		parts = upload(key, id, 5<<20, 5<<20, 3<<20)
		expectError(t, s.call("alice", "POST", "/s3/multipart/"+id+"/complete?key="+url.QueryEscape(key), map[string]any{"parts": parts}, nil), 413, "too_large")
		s.call("alice", "GET", "/"+id, nil, &rec)
		if rec.Status != "rejected" {
			t.Errorf("oversize upload: status %s", rec.Status)
		}
		if s.objectExists(key) {
			t.Error("oversize object exists")
		}

		// Abort.
		key, id = create()
		upload(key, id, 5<<20)
		if resp := s.call("alice", "DELETE", "/s3/multipart/"+id+"?key="+url.QueryEscape(key), nil, nil); resp.StatusCode != 204 {
			t.Fatalf("abort: %d", resp.StatusCode)
		}
		expectError(t, s.call("alice", "GET", "/s3/multipart/"+id+"?key="+url.QueryEscape(key), nil, nil), 410, "expired")
	})
}
