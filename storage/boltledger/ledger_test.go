package boltledger

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage"
	"github.com/caddyupload/caddyupload/storage/storagetest"
	bolt "go.etcd.io/bbolt"
)

var testModes = []struct {
	name string
	opts Options
}{
	{"GroupCommit", Options{}},
	{"NoGroupCommit", Options{NoGroupCommit: true}},
}

func TestConformance(t *testing.T) {
	for _, mode := range testModes {
		t.Run(mode.name, func(t *testing.T) {
			storagetest.RunLedger(t, func(t *testing.T, dir string) storage.Ledger {
				l, err := Open(filepath.Join(dir, "ledger.db"), mode.opts)
				if err != nil {
					t.Fatal(err)
				}
				return auditedLedger{l, t}
			})
		})
	}
}

func TestOutboxConformance(t *testing.T) {
	for _, mode := range testModes {
		t.Run(mode.name, func(t *testing.T) {
			storagetest.RunOutbox(t, func(t *testing.T, dir string) interface {
				storage.Ledger
				storage.Outbox
			} {
				l, err := Open(filepath.Join(dir, "ledger.db"), mode.opts)
				if err != nil {
					t.Fatal(err)
				}
				return auditedLedger{l, t}
			}, storagetest.WithClock(setClock))
		})
	}
}

// setClock sets the time written into events; nil is the real clock.
func setClock(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	clock = now
}

// auditedLedger checks the file's consistency when the suite closes it.
type auditedLedger struct {
	*Ledger
	t *testing.T
}

func (a auditedLedger) Close() error {
	checkConsistent(a.t, a.Ledger)
	return a.Ledger.Close()
}

// openTest opens a ledger that is closed, and checked for consistency, when
// the test ends.
func openTest(t *testing.T, path string, opts Options) *Ledger {
	t.Helper()
	l, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l.closed.Load() {
			return
		}
		checkConsistent(t, l)
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

func testRecord(id, key string) *storage.Record {
	return &storage.Record{
		ID: id, Key: key, Status: storage.StatusPending, CreatedAt: time.Unix(1_900_000_000, 0),
		Internal: storage.RecordInternal{Store: "s3:test", Kind: storage.KindPut, ExpiresAt: time.Unix(1_900_003_600, 0)},
	}
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	first := openTest(t, path, Options{})

	_, err := Open(path, Options{Timeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	for _, want := range []string{"ledger " + path + " is locked by another process", "same data directory", "caddy reload"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	openTest(t, path, Options{Timeout: 100 * time.Millisecond})
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "caddy", "upload")
	path := filepath.Join(dir, "ledger.db")
	openTest(t, path, Options{})

	for _, p := range []string{dir, filepath.Dir(dir), path} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s has mode %v, want no group or other access", p, perm)
		}
	}
}

func TestClosed(t *testing.T) {
	for _, mode := range testModes {
		t.Run(mode.name, func(t *testing.T) {
			ctx := t.Context()
			l := openTest(t, filepath.Join(t.TempDir(), "ledger.db"), mode.opts)
			if err := l.Create(ctx, testRecord("a", "a")); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if err := l.Create(ctx, testRecord("b", "b")); !errors.Is(err, ErrClosed) {
				t.Errorf("Create after Close: %v", err)
			}
			if _, err := l.Update(ctx, "a", func(*storage.Record) error { return nil }); !errors.Is(err, ErrClosed) {
				t.Errorf("Update after Close: %v", err)
			}
			if _, err := l.Get(ctx, "a"); !errors.Is(err, ErrClosed) {
				t.Errorf("Get after Close: %v", err)
			}
			if _, err := l.DueSweep(ctx, "s3:test", time.Now(), 1); !errors.Is(err, ErrClosed) {
				t.Errorf("DueSweep after Close: %v", err)
			}
		})
	}
}

// TestCloseDuringWrites: every write either lands or fails with ErrClosed,
// and none hangs.
func TestCloseDuringWrites(t *testing.T) {
	for _, mode := range testModes {
		t.Run(mode.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ledger.db")
			l := openTest(t, path, mode.opts)
			const writers, each = 8, 50
			landed := make(chan string, writers*each)
			errs := make(chan error, writers)
			started := make(chan struct{}, writers)
			for w := range writers {
				go func() {
					for i := range each {
						id := fmt.Sprintf("w%d-%d", w, i)
						err := l.Create(context.Background(), testRecord(id, id))
						if i == 0 {
							started <- struct{}{}
						}
						if errors.Is(err, ErrClosed) {
							break
						}
						if err != nil {
							errs <- err
							return
						}
						landed <- id
					}
					errs <- nil
				}()
			}
			for range writers {
				<-started
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			for range writers {
				if err := <-errs; err != nil {
					t.Fatalf("Create: %v", err)
				}
			}
			close(landed)

			l = openTest(t, path, mode.opts)
			n := 0
			for id := range landed {
				if _, err := l.Get(t.Context(), id); err != nil {
					t.Fatalf("acknowledged %s: %v", id, err)
				}
				n++
			}
			t.Logf("%d of %d writes landed before Close", n, writers*each)
		})
	}
}

func TestCanceledContext(t *testing.T) {
	for _, mode := range testModes {
		t.Run(mode.name, func(t *testing.T) {
			l := openTest(t, filepath.Join(t.TempDir(), "ledger.db"), mode.opts)
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if err := l.Create(ctx, testRecord("a", "a")); !errors.Is(err, context.Canceled) {
				t.Fatalf("Create: %v, want context.Canceled", err)
			}
			if _, err := l.Get(t.Context(), "a"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("canceled Create stored the record: %v", err)
			}
		})
	}
}

func TestUpdateMovesKey(t *testing.T) {
	ctx := t.Context()
	l := openTest(t, filepath.Join(t.TempDir(), "ledger.db"), Options{})
	for _, r := range []*storage.Record{testRecord("a", "ka"), testRecord("b", "kb")} {
		if err := l.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}

	_, err := l.Update(ctx, "a", func(r *storage.Record) error { r.Key = "kb"; return nil })
	if !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("Update to a taken key: %v, want ErrConflict", err)
	}
	if _, err := l.Update(ctx, "a", func(r *storage.Record) error { r.Key = "kc"; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := l.GetByKey(ctx, "s3:test", "ka"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("old key still found: %v", err)
	}
	if r, err := l.GetByKey(ctx, "s3:test", "kc"); err != nil || r.ID != "a" {
		t.Errorf("GetByKey(kc) = %v, %v", r, err)
	}
	// The old key is free again.
	if err := l.Create(ctx, testRecord("c", "ka")); err != nil {
		t.Fatal(err)
	}

	// Moving to another store moves the due entry with it.
	if _, err := l.Update(ctx, "b", func(r *storage.Record) error { r.Internal.Store = "s3:other"; return nil }); err != nil {
		t.Fatal(err)
	}
	due, err := l.DueSweep(ctx, "s3:other", time.Unix(2_000_000_000, 0), 10)
	if err != nil || len(due) != 1 || due[0].ID != "b" {
		t.Fatalf("DueSweep(s3:other) = %v, %v", due, err)
	}
	if r, err := l.GetByKey(ctx, "s3:other", "kb"); err != nil || r.ID != "b" {
		t.Errorf("GetByKey(s3:other, kb) = %v, %v", r, err)
	}
}

func TestUpdateRejectsIDChange(t *testing.T) {
	ctx := t.Context()
	l := openTest(t, filepath.Join(t.TempDir(), "ledger.db"), Options{})
	if err := l.Create(ctx, testRecord("a", "ka")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Update(ctx, "a", func(r *storage.Record) error { r.ID = "z"; return nil }); err == nil {
		t.Fatal("Update changed the id")
	}
	for id, want := range map[string]error{"a": nil, "z": storage.ErrNotFound} {
		if _, err := l.Get(ctx, id); !errors.Is(err, want) {
			t.Errorf("Get(%s): %v, want %v", id, err, want)
		}
	}
}

func TestInvalidRecord(t *testing.T) {
	l := openTest(t, filepath.Join(t.TempDir(), "ledger.db"), Options{})
	for name, mutate := range map[string]func(*storage.Record){
		"no id":         func(r *storage.Record) { r.ID = "" },
		"no key":        func(r *storage.Record) { r.Key = "" },
		"no store":      func(r *storage.Record) { r.Internal.Store = "" },
		"zero in store": func(r *storage.Record) { r.Internal.Store = "a\x00b" },
		"huge key":      func(r *storage.Record) { r.Key = strings.Repeat("k", bolt.MaxKeySize) },
	} {
		r := testRecord("a", "a")
		mutate(r)
		if err := l.Create(t.Context(), r); err == nil {
			t.Errorf("%s: Create accepted it", name)
		}
	}
}

// A pending record with no expiry is due at once rather than never swept.
func TestZeroExpiryIsDue(t *testing.T) {
	ctx := t.Context()
	l := openTest(t, filepath.Join(t.TempDir(), "ledger.db"), Options{})
	r := testRecord("a", "a")
	r.Internal.ExpiresAt = time.Time{}
	if err := l.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	due, err := l.DueSweep(ctx, "s3:test", time.Unix(0, 0), 10)
	if err != nil || len(due) != 1 {
		t.Fatalf("DueSweep = %v, %v", due, err)
	}
}

func TestUpdatePanicReachesCaller(t *testing.T) {
	for _, mode := range testModes {
		t.Run(mode.name, func(t *testing.T) {
			ctx := t.Context()
			l := openTest(t, filepath.Join(t.TempDir(), "ledger.db"), mode.opts)
			if err := l.Create(ctx, testRecord("a", "a")); err != nil {
				t.Fatal(err)
			}
			func() {
				defer func() {
					if v := recover(); v != "boom" {
						t.Fatalf("recovered %v, want the update function's panic", v)
					}
				}()
				l.Update(ctx, "a", func(r *storage.Record) error { r.Size = 99; panic("boom") })
			}()
			// The ledger still works and the panicking update left nothing.
			r, err := l.Update(ctx, "a", func(r *storage.Record) error { r.Size++; return nil })
			if err != nil || r.Size != 1 {
				t.Fatalf("Update after a panic = %v, %v", r, err)
			}
		})
	}
}
