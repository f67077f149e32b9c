package caddyupload

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

// A known path with another method answers 405 with the path's methods in
// Allow; an unknown path 404 without one.
func TestMethodNotAllowedSaysAllow(t *testing.T) {
	s := newSite(t, oneServer(t))
	s.load(s.caddyfile(""))
	c := s.create("alice", "a.txt", 3, "text/plain")
	for _, tc := range []struct{ method, path, allow string }{
		{"GET", "/", "POST"},
		{"PUT", "/" + c.ID, "GET, HEAD, DELETE"},
		{"GET", "/" + c.ID + "/complete", "POST"},
		{"DELETE", "/" + c.ID + "/parts", "GET, HEAD, POST"},
		{"POST", "/" + c.ID + "/download", "GET, HEAD"},
		{"POST", "/s3/params", "GET, HEAD"},
		{"GET", "/s3/multipart", "POST"},
		{"PUT", "/s3/multipart/" + c.ID, "GET, HEAD, DELETE"},
		{"GET", "/s3/multipart/" + c.ID + "/complete", "POST"},
	} {
		resp := s.call("alice", tc.method, tc.path, nil, nil)
		if got := resp.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
		expectError(t, resp, 405, "method_not_allowed")
	}
	// Positive control: the allowed method on the same path works.
	var rec record
	if resp := s.call("alice", "GET", "/"+c.ID, nil, &rec); resp.StatusCode != 200 || rec.ID != c.ID {
		t.Fatalf("GET /{id}: %d %+v", resp.StatusCode, rec)
	}
	resp := s.call("alice", "GET", "/"+c.ID+"/nothing", nil, nil)
	if resp.Header.Get("Allow") != "" {
		t.Errorf("404 with Allow %q", resp.Header.Get("Allow"))
	}
	expectError(t, resp, 404, "not_found")
}

// min_size holds for uploads created without a size too (Uppy's
// Companion routes): a declared size under it is refused at once, and
// stored bytes under it are rejected at completion.
func TestMinSizeWithoutDeclaredSize(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		s := newSite(t, srv)
		s.load(s.caddyfile("min_size 6MiB\n max_size 20MiB"))
		create := s.uppyCreate
		upload := s.uppyParts
		complete := func(key, id string, parts []companionPart) *http.Response {
			return s.call("alice", "POST", "/s3/multipart/"+id+"/complete?key="+url.QueryEscape(key), map[string]any{"parts": parts}, nil)
		}

		expectError(t, s.call("alice", "POST", "/s3/multipart", map[string]any{"filename": "v.bin", "type": "application/octet-stream", "size": 1000}, nil), 400, "invalid_request")

		key, id := create()
		expectError(t, complete(key, id, upload(key, id, 1000)), 422, "verification_failed")
		var rec record
		s.call("alice", "GET", "/"+id, nil, &rec)
		if rec.Status != "rejected" || s.objectExists(key) {
			t.Errorf("an upload under min_size: status %s, object kept %v", rec.Status, s.objectExists(key))
		}

		// Positive control: enough bytes confirm.
		key, id = create()
		if resp := complete(key, id, upload(key, id, 5<<20, 2<<20)); resp.StatusCode != 200 {
			t.Fatalf("an upload over min_size: %d", resp.StatusCode)
		}
	})
}

// A storage server that cannot be reached never passes for one that
// refused a request: attack tests that expect a refusal cannot pass because
// a server was down.
func TestRefusalIsNotAnOutage(t *testing.T) {
	port := realservers.FreePort(t) // nothing listens there
	st, err := tryPut(fmt.Sprintf("http://127.0.0.1:%d/b/k", port), nil, []byte("abc"))
	if err == nil || refusal(st, err) {
		t.Fatalf("a failed dial (%d, %v) counted as a refusal", st, err)
	}
	if !refusal(http.StatusForbidden, nil) || refusal(http.StatusOK, nil) {
		t.Fatal("403 must be a refusal and 200 must not")
	}
}
