package caddyupload

import (
	"net/http"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

// Terminal records are deleted once the route's retention for their
// status has passed; a confirmed upload's object stays with the
// application, and records still within their retention stay.
func TestRetentionDeletesTerminalRecords(t *testing.T) {
	old := urlSkew
	urlSkew = 0 // the servers here share Caddy's clock
	t.Cleanup(func() { urlSkew = old })
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		s := newSite(t, srv)
		s.load(s.caddyfile("url_ttl 3s\n pending_ttl 1h\n sweep_interval 1s\n retention 2s\n retention_confirmed 3s"))
		found := func(id string) bool {
			return s.call("alice", "GET", "/"+id, nil, nil).StatusCode != http.StatusNotFound
		}

		aborted := s.create("alice", "a.txt", 4, "text/plain")
		if resp := s.call("alice", "DELETE", "/"+aborted.ID, nil, nil); resp.StatusCode != 204 {
			t.Fatalf("abort: %d", resp.StatusCode)
		}
		confirmed := s.create("alice", "c.txt", 4, "text/plain")
		if st := s.put(confirmed, []byte("kept"), nil); st != 200 {
			t.Fatalf("PUT: %d", st)
		}
		if resp := s.call("alice", "POST", "/"+confirmed.ID+"/complete", nil, nil); resp.StatusCode != 200 {
			t.Fatalf("complete: %d", resp.StatusCode)
		}
		pending := s.create("alice", "p.txt", 4, "text/plain")

		// Control: all three are there at first.
		for _, c := range []created{aborted, confirmed, pending} {
			if !found(c.ID) {
				t.Fatalf("%s missing right away", c.Key)
			}
		}
		eventually(t, "the aborted record deleted", func() bool { return !found(aborted.ID) })
		eventually(t, "the confirmed record deleted", func() bool { return !found(confirmed.ID) })
		if !s.objectExists(confirmed.Key) {
			t.Error("retention deleted a confirmed upload's object")
		}
		if !found(pending.ID) {
			t.Error("retention deleted a pending upload")
		}

		// A route without retention_confirmed keeps confirmed records.
		s.load(s.caddyfile("url_ttl 3s\n sweep_interval 1s\n retention 1s"))
		kept := s.create("alice", "k.txt", 4, "text/plain")
		if st := s.put(kept, []byte("kept"), nil); st != 200 {
			t.Fatalf("PUT: %d", st)
		}
		if resp := s.call("alice", "POST", "/"+kept.ID+"/complete", nil, nil); resp.StatusCode != 200 {
			t.Fatalf("complete: %d", resp.StatusCode)
		}
		gone := s.create("alice", "g.txt", 4, "text/plain")
		s.call("alice", "DELETE", "/"+gone.ID, nil, nil)
		eventually(t, "the aborted record deleted", func() bool { return !found(gone.ID) })
		time.Sleep(2 * time.Second) // two more sweeps
		if !found(kept.ID) {
			t.Error("a confirmed record was deleted without retention_confirmed")
		}
	})
}
