package caddyupload

import (
	"net/http"
	"testing"
	"time"
)

func TestDownloadPolicyAndExpiry(t *testing.T) {
	s := newSite(t, oneServer(t))
	upload := func() created {
		c := s.create("alice", "Quarterly report \"final\".txt", 5, "text/plain")
		if st := s.put(c, []byte("hello"), nil); st != 200 {
			t.Fatalf("PUT: %d", st)
		}
		if resp := s.call("alice", "POST", "/"+c.ID+"/complete", nil, nil); resp.StatusCode != 200 {
			t.Fatalf("complete: %d", resp.StatusCode)
		}
		return c
	}

	s.load(s.caddyfile("download_ttl 1s"))
	c := upload()
	resp := s.call("alice", "GET", "/"+c.ID+"/download", nil, nil)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("owner download: %d", resp.StatusCode)
	}
	link := resp.Header.Get("Location")
	expectError(t, s.call("bob", "GET", "/"+c.ID+"/download", nil, nil), 404, "not_found")
	pending := s.create("alice", "p.txt", 1, "text/plain")
	expectError(t, s.call("alice", "GET", "/"+pending.ID+"/download", nil, nil), 409, "not_uploaded")
	time.Sleep(2500 * time.Millisecond)
	if got := do(t, http.DefaultClient, mustRequest(t, "GET", link)); got.StatusCode != http.StatusForbidden {
		t.Errorf("expired download link: %d, want 403", got.StatusCode)
	}

	// "authenticated": any caller the route authenticates.
	s.load(s.caddyfile("download authenticated"))
	if resp := s.call("bob", "GET", "/"+c.ID+"/download", nil, nil); resp.StatusCode != http.StatusFound {
		t.Errorf("authenticated policy, another user: %d", resp.StatusCode)
	}
	// Everything else stays the owner's.
	expectError(t, s.call("bob", "GET", "/"+c.ID, nil, nil), 404, "not_found")
}
