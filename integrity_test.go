package caddyupload

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/internal/realservers"
	"github.com/caddyupload/caddyupload/storage"
)

// These tests attack the promise that what was confirmed is what storage
// holds, as the owner of a still-valid upload URL would.

// download follows a download redirect and returns the bytes served.
func (s *testSite) download(user, id string) (int, []byte) {
	s.t.Helper()
	resp := s.call(user, "GET", "/"+id+"/download", nil, nil)
	if resp.StatusCode != http.StatusFound {
		return resp.StatusCode, nil
	}
	got := do(s.t, http.DefaultClient, mustRequest(s.t, "GET", resp.Header.Get("Location")))
	return got.StatusCode, got.body
}

// A PUT URL creates its object once: used again after the upload was
// confirmed, storage refuses it, and the download serves what was
// confirmed.
func TestConfirmedPutCannotBeReplaced(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		s := newSite(t, srv)
		s.load(s.caddyfile(""))
		original := []byte("original")
		c := s.create("alice", "a.txt", int64(len(original)), "text/plain")
		if c.Headers["If-None-Match"] != "*" {
			t.Errorf("create headers %v: want If-None-Match: *", c.Headers)
		}
		if st := s.put(c, original, nil); st != 200 {
			t.Fatalf("first PUT: %d", st)
		}
		if resp := s.call("alice", "POST", "/"+c.ID+"/complete", nil, nil); resp.StatusCode != 200 {
			t.Fatalf("complete: %d", resp.StatusCode)
		}
		if st := s.put(c, []byte("replaced"), nil); st != http.StatusPreconditionFailed {
			t.Errorf("PUT through the same URL after confirmation: %d, want 412", st)
		}
		// Leaving the condition out breaks the signature.
		if st := s.put(c, []byte("replaced"), map[string]string{"If-None-Match": ""}); !refused(st) {
			t.Errorf("PUT without If-None-Match: %d, want 403", st)
		}
		if st, body := s.download("alice", c.ID); st != 200 || !bytes.Equal(body, original) {
			t.Errorf("download: %d %q, want the confirmed bytes", st, body)
		}
	})
}

// A POST form stays valid after confirmation and S3 cannot make it
// create-only: a replacement through it is detected, never served, and the
// record rejected.
func TestReplacedPostObjectNeverServed(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		s := newSite(t, srv)
		s.load(s.caddyfile("method post"))
		c := s.create("alice", "a.txt", 8, "text/plain")
		if st := postForm(t, c, []byte("original")); st >= 300 {
			t.Fatalf("form upload: %d", st)
		}
		if resp := s.call("alice", "POST", "/"+c.ID+"/complete", nil, nil); resp.StatusCode != 200 {
			t.Fatalf("complete: %d", resp.StatusCode)
		}
		// Positive control: before the replacement the download works.
		if st, body := s.download("alice", c.ID); st != 200 || string(body) != "original" {
			t.Fatalf("download before: %d %q", st, body)
		}
		if st := postForm(t, c, []byte("replaced")); st >= 300 {
			t.Fatalf("second form upload: %d (storage refused it: the attack is moot there)", st)
		}
		st, body := s.download("alice", c.ID)
		if st != 422 || bytes.Contains(body, []byte("replaced")) {
			t.Errorf("download after the replacement: %d %q, want 422", st, body)
		}
		var rec record
		s.call("alice", "GET", "/"+c.ID, nil, &rec)
		if rec.Status != "rejected" || s.objectExists(c.Key) {
			t.Errorf("after the replacement: status %s, object kept %v", rec.Status, s.objectExists(c.Key))
		}
	})
}

// Headers sent unsigned with the PUT are stored and would be served back
// (Content-Encoding: gzip makes a browser expand bytes nobody verified):
// such an object is rejected at completion.
func TestUnsignedStoredHeadersRejected(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		s := newSite(t, srv)
		s.load(s.caddyfile(""))
		for _, h := range []string{"Content-Encoding", "Content-Disposition", "Content-Language", "Expires"} {
			value := map[string]string{"Content-Encoding": "gzip",
				"Content-Disposition": "inline", "Content-Language": "de", "Expires": "Wed, 21 Oct 2037 07:28:00 GMT"}[h]
			c := s.create("alice", "a.txt", 5, "text/plain")
			st := s.put(c, []byte("hello"), map[string]string{h: value})
			if st != 200 {
				// The server refused the header itself: nothing was stored.
				t.Logf("%s: storage answered %d", h, st)
				continue
			}
			expectError(t, s.call("alice", "POST", "/"+c.ID+"/complete", nil, nil), 422, "verification_failed")
			if s.objectExists(c.Key) {
				t.Errorf("%s: the object was kept", h)
			}
		}
		// Positive control: the same upload without those headers
		// confirms. Cache-Control, which browsers send on their own, is
		// kept in storage but overridden by the download.
		c := s.create("alice", "a.txt", 5, "text/plain")
		if st := s.put(c, []byte("hello"), map[string]string{"Cache-Control": "public, max-age=31536000"}); st != 200 {
			t.Fatalf("PUT: %d", st)
		}
		if resp := s.call("alice", "POST", "/"+c.ID+"/complete", nil, nil); resp.StatusCode != 200 {
			t.Fatalf("complete: %d", resp.StatusCode)
		}
		resp := s.call("alice", "GET", "/"+c.ID+"/download", nil, nil)
		got := do(t, http.DefaultClient, mustRequest(t, "GET", resp.Header.Get("Location")))
		if got.StatusCode != 200 || got.Header.Get("Cache-Control") != "private, max-age=60, immutable" {
			t.Errorf("download: %d, Cache-Control %q, want the override", got.StatusCode, got.Header.Get("Cache-Control"))
		}
	})
}

// A declared sha256 is verified by storage for single PUTs; where it could
// not be (POST forms, multipart), it is refused up front rather than passed
// on to the application unverified.
func TestSHA256RefusedWhereUnverifiable(t *testing.T) {
	s := newSite(t, oneServer(t))
	sum := "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
	s.load(s.caddyfile("method post\n multipart_threshold 5MiB"))
	expectError(t, s.call("alice", "POST", "/", map[string]any{"filename": "a.txt", "size": 5, "type": "text/plain", "sha256": sum}, nil), 400, "invalid_request")
	s.load(s.caddyfile("multipart_threshold 5MiB"))
	expectError(t, s.call("alice", "POST", "/", map[string]any{"filename": "a.bin", "size": 6 << 20, "type": "application/octet-stream", "sha256": sum}, nil), 400, "invalid_request")
	// Positive control: a single PUT takes it, signed.
	var c created
	if resp := s.call("alice", "POST", "/", map[string]any{"filename": "a.txt", "size": 5, "type": "text/plain", "sha256": sum}, &c); resp.StatusCode != 201 || c.Headers["X-Amz-Checksum-Sha256"] == "" {
		t.Fatalf("create with sha256: %d %+v", resp.StatusCode, c.Headers)
	}
}

// Parts of an upload created without a size (Uppy's) carry no signed
// length: they are signed only while the stored ones fit the route's limit,
// and never more of them than the limit can hold.
func TestUnsizedPartsBounded(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		s := newSite(t, srv)
		s.load(s.caddyfile("max_size 12MiB"))
		create := s.uppyCreate
		sign := func(key, id string, n int) *http.Response {
			return s.call("alice", "GET", fmt.Sprintf("/s3/multipart/%s/%d?key=%s", id, n, url.QueryEscape(key)), nil, nil)
		}

		// More parts than 12 MiB can hold at 5 MiB each: refused.
		key, id := create()
		expectError(t, sign(key, id, 4), 413, "too_large")

		// Storage holds more than the limit: the next part is refused and
		// the upload ended, its parts gone.
		s.uppyParts(key, id, 5<<20, 8<<20)
		expectError(t, sign(key, id, 3), 413, "too_large")
		var rec record
		s.call("alice", "GET", "/"+id, nil, &rec)
		if rec.Status != "rejected" {
			t.Errorf("after an oversized part: status %s", rec.Status)
		}
		expectError(t, s.call("alice", "GET", "/s3/multipart/"+id+"?key="+url.QueryEscape(key), nil, nil), 422, "verification_failed")

		// Positive control: parts within the limit are signed and confirm.
		key, id = create()
		parts := s.uppyParts(key, id, 5<<20, 5<<20, 2<<20)
		if resp := s.call("alice", "POST", "/s3/multipart/"+id+"/complete?key="+url.QueryEscape(key), map[string]any{"parts": parts}, nil); resp.StatusCode != 200 {
			t.Fatalf("complete within the limit: %d", resp.StatusCode)
		}
	})
}

// An object written through a still-valid URL after its upload was aborted
// or rejected is removed once no URL can write it any more; a confirmed
// upload beside them is left alone.
func TestWritesAfterCloseRemoved(t *testing.T) {
	old := urlSkew
	urlSkew = 0 // the servers here share Caddy's clock
	t.Cleanup(func() { urlSkew = old })
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		s := newSite(t, srv)
		s.load(s.caddyfile("url_ttl 2s\n sweep_interval 1s"))

		kept := s.create("alice", "kept.txt", 4, "text/plain")
		if st := s.put(kept, []byte("kept"), nil); st != 200 {
			t.Fatalf("PUT: %d", st)
		}
		if resp := s.call("alice", "POST", "/"+kept.ID+"/complete", nil, nil); resp.StatusCode != 200 {
			t.Fatalf("complete: %d", resp.StatusCode)
		}

		aborted := s.create("alice", "a.txt", 5, "text/plain")
		if resp := s.call("alice", "DELETE", "/"+aborted.ID, nil, nil); resp.StatusCode != 204 {
			t.Fatalf("abort: %d", resp.StatusCode)
		}
		rejected := s.create("alice", "r.txt", 5, "text/plain")
		s.putDirect(rejected.Key, []byte("<b>x"), "text/html")
		expectError(t, s.call("alice", "POST", "/"+rejected.ID+"/complete", nil, nil), 422, "verification_failed")

		// The attack: the URLs are still valid, and storage takes the bytes.
		for _, c := range []created{aborted, rejected} {
			if st := s.put(c, []byte("later"), nil); st != 200 {
				t.Fatalf("PUT after the upload was closed: %d (storage refused it: the attack is moot there)", st)
			}
			if !s.objectExists(c.Key) {
				t.Fatal("the write after close did not land")
			}
		}
		eventually(t, "objects written after close removed", func() bool {
			return !s.objectExists(aborted.Key) && !s.objectExists(rejected.Key)
		})
		if !s.objectExists(kept.Key) {
			t.Error("the sweeper removed a confirmed upload")
		}
		var rec record
		s.call("alice", "GET", "/"+aborted.ID, nil, &rec)
		if rec.Status != "aborted" {
			t.Errorf("aborted record: %s", rec.Status)
		}
	})
}

// A complete whose write lands after the sweeper listed its record as due
// (a slow commit) wins: the sweeper deletes only what it claimed in the
// ledger, so a confirmed record never points at a deleted object. Another
// abandoned upload in the same sweep is expired and deleted (control).
func TestSweeperNeverDeletesAConfirmedObject(t *testing.T) {
	s := newSite(t, oneServer(t))
	var target string
	hook := func(h *Handler, due []*storage.Record) {
		for _, rec := range due {
			if rec.ID != target {
				continue
			}
			_, err := h.ledger.Update(context.Background(), rec.ID, func(cur *storage.Record) error {
				if cur.Status == storage.StatusPending {
					now := time.Now().UTC()
					cur.Status, cur.ConfirmedAt = storage.StatusConfirmed, &now
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}
	}
	afterSweepList.Store(&hook)
	t.Cleanup(func() { afterSweepList.Store(nil) })
	s.load(s.caddyfile("url_ttl 3s\n pending_ttl 3s\n sweep_interval 1s"))

	late := s.create("alice", "late.txt", 4, "text/plain")
	target = late.ID
	abandoned := s.create("alice", "left.txt", 4, "text/plain")
	for _, c := range []created{late, abandoned} {
		if st := s.put(c, []byte("data"), nil); st != 200 {
			t.Fatalf("PUT: %d", st)
		}
	}
	var rec record
	eventually(t, "the abandoned upload expired", func() bool {
		s.call("alice", "GET", "/"+abandoned.ID, nil, &rec)
		return rec.Status == "expired"
	})
	eventually(t, "the expired upload's object deleted", func() bool { return !s.objectExists(abandoned.Key) })
	s.call("alice", "GET", "/"+late.ID, nil, &rec)
	if rec.Status != "confirmed" || !s.objectExists(late.Key) {
		t.Errorf("the upload confirmed during the sweep: status %s, object kept %v", rec.Status, s.objectExists(late.Key))
	}
}

// Writes that land after their record was closed by someone who could not
// see them — an assembly of parts still running in another instance when
// DELETE came, a PUT still sending when the upload expired — are removed
// by the sweeper once no such write can land any more. Storage is written
// directly here, as such a late write would.
func TestLateWritesAfterCloseRemoved(t *testing.T) {
	old := urlSkew
	urlSkew = 4 * time.Second // the margin for writes under way, short for the test
	t.Cleanup(func() { urlSkew = old })
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		s := newSite(t, srv)
		s.load(s.caddyfile("url_ttl 3s\n pending_ttl 3s\n sweep_interval 1s\n multipart_threshold 5MiB"))

		multi := s.create("alice", "big.bin", 6<<20, "application/octet-stream")
		if resp := s.call("alice", "DELETE", "/"+multi.ID, nil, nil); resp.StatusCode != 204 {
			t.Fatalf("abort: %d", resp.StatusCode)
		}
		s.putDirect(multi.Key, []byte("assembled late"), "application/octet-stream")

		expired := s.create("alice", "slow.txt", 4, "text/plain")
		var rec record
		eventually(t, "the abandoned upload expired", func() bool {
			s.call("alice", "GET", "/"+expired.ID, nil, &rec)
			return rec.Status == "expired"
		})
		s.putDirect(expired.Key, []byte("slow"), "text/plain")

		// Control: a confirmed upload made meanwhile stays.
		kept := s.create("alice", "kept.txt", 4, "text/plain")
		if st := s.put(kept, []byte("kept"), nil); st != 200 {
			t.Fatalf("PUT: %d", st)
		}
		if resp := s.call("alice", "POST", "/"+kept.ID+"/complete", nil, nil); resp.StatusCode != 200 {
			t.Fatalf("complete: %d", resp.StatusCode)
		}

		if !s.objectExists(multi.Key) || !s.objectExists(expired.Key) {
			t.Fatal("the late writes did not land")
		}
		eventually(t, "late writes removed", func() bool {
			return !s.objectExists(multi.Key) && !s.objectExists(expired.Key)
		})
		if !s.objectExists(kept.Key) {
			t.Error("the sweeper removed a confirmed upload")
		}
	})
}
