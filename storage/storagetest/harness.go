package storagetest

import (
	"testing"

	"github.com/caddyupload/caddyupload/storage"
)

// harness holds the ledger under test in one subtest of a suite: opened in
// a fresh directory, reopened on demand, closed when the subtest ends.
type harness[L storage.Ledger] struct {
	t      *testing.T
	open   func(t *testing.T, dir string) L
	dir    string
	l      L
	closed bool
}

func newHarness[L storage.Ledger](t *testing.T, open func(t *testing.T, dir string) L) *harness[L] {
	h := &harness[L]{t: t, open: open, dir: t.TempDir()}
	h.l = open(t, h.dir)
	t.Cleanup(func() {
		if !h.closed {
			if err := h.l.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
	})
	return h
}

// reopen closes the ledger and opens it again on the same directory.
func (h *harness[L]) reopen() {
	h.t.Helper()
	h.closed = true // a failing open must not be followed by a second Close
	if err := h.l.Close(); err != nil {
		h.t.Fatalf("Close: %v", err)
	}
	h.l = h.open(h.t, h.dir)
	h.closed = false
}

func (h *harness[L]) create(recs ...*storage.Record) {
	h.t.Helper()
	for _, r := range recs {
		if err := h.l.Create(h.t.Context(), r); err != nil {
			h.t.Fatalf("Create(%s): %v", r.ID, err)
		}
	}
}

func (h *harness[L]) update(id string, fn func(*storage.Record)) *storage.Record {
	h.t.Helper()
	rec, err := h.l.Update(h.t.Context(), id, func(r *storage.Record) error { fn(r); return nil })
	if err != nil {
		h.t.Fatalf("Update(%s): %v", id, err)
	}
	return rec
}
