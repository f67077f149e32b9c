package boltledger

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// TestParkedBadCursor: a cursor ParkedEvents did not hand out is an error
// that callers can tell from a failing ledger, never a silent first page.
func TestParkedBadCursor(t *testing.T) {
	l := openTest(t, filepath.Join(t.TempDir(), "ledger.db"), Options{})
	ctx := t.Context()
	for _, id := range []string{"a", "b"} {
		rec := &storage.Record{ID: id, Key: "k/" + id, Status: storage.StatusRejected, CreatedAt: time.Now(),
			Internal: storage.RecordInternal{Store: "s", Route: "r", Notify: true}}
		if err := l.Create(ctx, rec); err != nil {
			t.Fatal(err)
		}
		if err := l.RetryEvent(ctx, id+":"+storage.EventRejected, time.Now(), "x", true); err != nil {
			t.Fatal(err)
		}
	}
	// The cursor handed out works.
	evs, next, err := l.ParkedEvents(ctx, "", "", 1)
	if err != nil || len(evs) != 1 || next == "" {
		t.Fatalf("first page: %d events, next %q, %v", len(evs), next, err)
	}
	evs2, last, err := l.ParkedEvents(ctx, "", next, 1)
	if err != nil || len(evs2) != 1 || last != "" || evs2[0].ID == evs[0].ID {
		t.Fatalf("second page: %v, next %q, %v", evs2, last, err)
	}
	for _, bad := range []string{"%%%", "AAAA", "not base64!", next[:len(next)-1] + "*"} {
		evs, next, err := l.ParkedEvents(ctx, "", bad, 10)
		if !errors.Is(err, storage.ErrBadCursor) || len(evs) != 0 || next != "" {
			t.Errorf("cursor %q: %d events, next %q, error %v; want ErrBadCursor", bad, len(evs), next, err)
		}
	}
	if ids := []string{evs[0].ID, evs2[0].ID}; !slices.Contains(ids, "a:upload.rejected") || !slices.Contains(ids, "b:upload.rejected") {
		t.Errorf("pages %v", ids)
	}
}

// TestRerouteBadRoute: a route an index key cannot hold is refused before
// anything is written, and the event stays as it was.
func TestRerouteBadRoute(t *testing.T) {
	l := openTest(t, filepath.Join(t.TempDir(), "ledger.db"), Options{})
	ctx := t.Context()
	rec := &storage.Record{ID: "a", Key: "k/a", Status: storage.StatusConfirmed, CreatedAt: time.Now(),
		Internal: storage.RecordInternal{Store: "s", Route: "r", Notify: true}}
	if err := l.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	id := "a:" + storage.EventConfirmed
	long := make([]byte, 40000)
	for i := range long {
		long[i] = 'x'
	}
	for _, bad := range []string{"a\x00b", string(long)} {
		if err := l.RerouteEvent(ctx, id, bad); err == nil || errors.Is(err, storage.ErrNotFound) {
			t.Errorf("reroute to a route of %d bytes: %v", len(bad), err)
		}
	}
	if evs, err := l.DueEvents(ctx, "r", time.Now(), 10); err != nil || len(evs) != 1 || evs[0].ID != id {
		t.Fatalf("after refused reroutes: %v, %v", evs, err)
	}
	if err := l.RerouteEvent(ctx, id, "s"); err != nil {
		t.Fatal(err)
	}
	if evs, err := l.DueEvents(ctx, "s", time.Now(), 10); err != nil || len(evs) != 1 || evs[0].ID != id {
		t.Fatalf("after a reroute: %v, %v", evs, err)
	}
}
