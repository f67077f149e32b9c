package boltledger

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/caddyupload/caddyupload/storage"
	bolt "go.etcd.io/bbolt"
)

// TestBatchIsolation runs one group of writes in one transaction and checks
// that each failing write fails alone and leaves nothing behind, while the
// others land and see the writes before them.
func TestBatchIsolation(t *testing.T) {
	ctx := t.Context()
	l := openTest(t, filepath.Join(t.TempDir(), "ledger.db"), Options{NoGroupCommit: true})
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	errMine := errors.New("mine")

	var ops []*op
	add := func(ctx context.Context, p prepareFunc) *op {
		o := &op{ctx: ctx, prepare: p, done: make(chan result, 1)}
		ops = append(ops, o)
		return o
	}
	create := func(ctx context.Context, r *storage.Record) *op {
		p, err := createOp(r)
		if err != nil {
			t.Fatal(err)
		}
		return add(ctx, p)
	}
	update := func(id string, fn func(*storage.Record) error) *op { return add(ctx, updateOp(id, fn)) }

	createA := create(ctx, testRecord("a", "ka"))
	createDupKey := create(ctx, testRecord("b", "ka"))
	updateErr := update("a", func(r *storage.Record) error {
		r.Status = storage.StatusConfirmed
		return errMine
	})
	updateA := update("a", func(r *storage.Record) error { r.Size = 10; return nil })
	createC := create(ctx, testRecord("c", "kc"))
	updatePanic := update("a", func(r *storage.Record) error { r.Size = 666; panic("boom") })
	updateMissing := update("missing", func(*storage.Record) error { return nil })
	createCanceled := create(canceled, testRecord("d", "kd"))
	updateTakenKey := update("c", func(r *storage.Record) error { r.Key = "ka"; return nil })
	confirmC := update("c", func(r *storage.Record) error { r.Status = storage.StatusConfirmed; return nil })

	before := l.Stats()
	l.runBatch(ops)
	after := l.Stats()
	if after.Commits != before.Commits+1 || after.Writes != before.Writes+4 {
		t.Errorf("stats went from %+v to %+v, want one commit of 4 writes", before, after)
	}

	wantResult := func(name string, o *op, want error) result {
		t.Helper()
		r := <-o.done
		if !errors.Is(r.err, want) || r.panicked != nil {
			t.Errorf("%s: %+v, want error %v", name, r, want)
		}
		return r
	}
	wantResult("create a", createA, nil)
	wantResult("create with a's key", createDupKey, storage.ErrConflict)
	if r := <-updateErr.done; r.err != errMine {
		t.Errorf("failing update: %v, want its own error", r.err)
	}
	if r := wantResult("update a", updateA, nil); r.rec == nil || r.rec.Size != 10 {
		t.Errorf("update a returned %+v", r.rec)
	}
	wantResult("create c", createC, nil)
	if r := <-updatePanic.done; r.panicked != "boom" {
		t.Errorf("panicking update: %+v", r)
	}
	wantResult("update missing", updateMissing, storage.ErrNotFound)
	wantResult("canceled create", createCanceled, context.Canceled)
	wantResult("update to a taken key", updateTakenKey, storage.ErrConflict)
	wantResult("confirm c", confirmC, nil)

	if a, err := l.Get(ctx, "a"); err != nil || a.Size != 10 || a.Status != storage.StatusPending {
		t.Errorf("a = %+v, %v", a, err)
	}
	for _, id := range []string{"b", "d"} {
		if _, err := l.Get(ctx, id); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Get(%s): %v, want ErrNotFound", id, err)
		}
	}
	if r, err := l.GetByKey(ctx, "s3:test", "ka"); err != nil || r.ID != "a" {
		t.Errorf("GetByKey(ka) = %+v, %v", r, err)
	}
	if r, err := l.GetByKey(ctx, "s3:test", "kc"); err != nil || r.ID != "c" || r.Status != storage.StatusConfirmed {
		t.Errorf("GetByKey(kc) = %+v, %v", r, err)
	}
	due, err := l.DueSweep(ctx, "s3:test", testRecord("", "").Internal.ExpiresAt.Add(1), 10)
	if err != nil || len(due) != 1 || due[0].ID != "a" {
		t.Errorf("DueSweep = %v, %v; want only a", due, err)
	}
}

// TestBatchWriteFailure: when bbolt refuses a write halfway through an
// operation, the transaction is not committed and every operation in it
// is told so; none is acknowledged without being stored.
func TestBatchWriteFailure(t *testing.T) {
	ctx := t.Context()
	l := openTest(t, filepath.Join(t.TempDir(), "ledger.db"), Options{NoGroupCommit: true})

	mk := func(p prepareFunc) *op { return &op{ctx: ctx, prepare: p, done: make(chan result, 1)} }
	pa, _ := createOp(testRecord("a", "ka"))
	pc, _ := createOp(testRecord("c", "kc"))
	broken := func(*bolt.Tx) ([]mutation, *storage.Record, error) {
		return []mutation{
			{bucket: bucketRecords, key: []byte("b"), value: []byte{1}},
			{bucket: bucketKeys, key: nil, value: []byte("b")}, // bbolt: key required
		}, nil, nil
	}
	ops := []*op{mk(pa), mk(broken), mk(pc)}
	l.runBatch(ops)
	for i, o := range ops {
		if r := <-o.done; r.err == nil {
			t.Errorf("op %d succeeded in a transaction that was rolled back", i)
		}
	}
	for _, id := range []string{"a", "b", "c"} {
		if _, err := l.Get(ctx, id); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Get(%s): %v, want ErrNotFound", id, err)
		}
	}
	if s := l.Stats(); s.Commits != 0 || s.Writes != 0 {
		t.Errorf("stats %+v after a failed batch", s)
	}
	// The ledger goes on.
	if err := l.Create(ctx, testRecord("a", "ka")); err != nil {
		t.Fatal(err)
	}
}
