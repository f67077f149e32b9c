package storagetest

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// RunLedger is the conformance suite of storage.Ledger. open returns a ledger
// kept in dir (a fresh temporary directory per subtest); opening the same dir
// again after Close must give back everything written before. The suite
// closes each ledger it opens exactly once.
func RunLedger(t *testing.T, open func(t *testing.T, dir string) storage.Ledger) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, h *ledgerHarness)
	}{
		{"CreateGet", ledgerTestCreateGet},
		{"CreateDuplicateID", ledgerTestDuplicateID},
		{"CreateDuplicateKey", ledgerTestDuplicateKey},
		{"NotFound", ledgerTestNotFound},
		{"CopiesAreIndependent", ledgerTestCopies},
		{"Update", ledgerTestUpdate},
		{"UpdateError", ledgerTestUpdateError},
		{"GetByKey", ledgerTestGetByKey},
		{"DueSweep", ledgerTestDueSweep},
		{"DueSweepFollowsUpdate", ledgerTestDueFollowsUpdate},
		{"Persistence", ledgerTestPersistence},
		{"Concurrent", ledgerTestConcurrent},
		{"Delete", ledgerTestDelete},
		{"List", ledgerTestList},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &ledgerHarness{newHarness(t, open)}
			tc.run(t, h)
		})
	}
}

type ledgerHarness struct{ *harness[storage.Ledger] }

// wantStored asserts that id is stored as want, both by id and by key.
func (h *ledgerHarness) wantStored(want *storage.Record) {
	h.t.Helper()
	got, err := h.l.Get(h.t.Context(), want.ID)
	if err != nil {
		h.t.Fatalf("Get(%s): %v", want.ID, err)
	}
	ledgerWantEqual(h.t, "Get", got, want)
	got, err = h.l.GetByKey(h.t.Context(), want.Internal.Store, want.Key)
	if err != nil {
		h.t.Fatalf("GetByKey(%s, %s): %v", want.Internal.Store, want.Key, err)
	}
	ledgerWantEqual(h.t, "GetByKey", got, want)
}

// wantDue asserts the ids DueSweep lists, in order.
func (h *ledgerHarness) wantDue(store string, before time.Time, limit int, ids ...string) []*storage.Record {
	h.t.Helper()
	recs, err := h.l.DueSweep(h.t.Context(), store, before, limit)
	if err != nil {
		h.t.Fatalf("DueSweep(%s, %s, %d): %v", store, before, limit, err)
	}
	got := make([]string, len(recs))
	for i, r := range recs {
		got[i] = r.ID
		if !r.NeedsSweep() || r.Internal.Store != store || !r.Internal.ExpiresAt.Before(before) {
			h.t.Errorf("DueSweep(%s, %s) listed %s", store, before, ledgerDump(r))
		}
	}
	if len(ids) == 0 {
		ids = []string{}
	}
	if !reflect.DeepEqual(got, ids) {
		h.t.Fatalf("DueSweep(%s, %s, %d) = %v, want %v", store, before, limit, got, ids)
	}
	return recs
}

// ledgerBase is whole microseconds so that backends with microsecond
// timestamps (PostgreSQL) round-trip it exactly.
var ledgerBase = time.Date(2031, 3, 4, 5, 6, 7, 891011000, time.UTC)

func ledgerAt(d time.Duration) time.Time { return ledgerBase.Add(d) }

// ledgerRecord is a pending record with every field set.
func ledgerRecord(id, store, key string, expires time.Time) *storage.Record {
	return &storage.Record{
		ID:        id,
		Key:       key,
		Status:    storage.StatusPending,
		Filename:  "Ferien Bild " + id + " ✓.jpg",
		Size:      123456789,
		Type:      "image/jpeg",
		SHA256:    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Metadata:  map[string]string{"album": "holiday", "caption": "line\none \"quoted\""},
		CreatedAt: ledgerAt(-time.Hour),
		Internal: storage.RecordInternal{
			Subject:   "user|" + id,
			Store:     store,
			Route:     "avatars",
			Kind:      storage.KindMultipart,
			MaxSize:   5 << 20,
			UploadID:  "upload-" + id,
			PartSize:  8 << 20,
			PartCount: 16,
			ExpiresAt: expires,
			UpdatedAt: ledgerAt(-time.Minute),
			Reason:    "",
		},
	}
}

// ledgerNormalize makes records comparable across backends: times in UTC
// (the instant is what must survive) and an empty metadata map as nil.
func ledgerNormalize(r *storage.Record) *storage.Record {
	c := r.Clone()
	c.CreatedAt = c.CreatedAt.UTC()
	c.Internal.ExpiresAt = c.Internal.ExpiresAt.UTC()
	c.Internal.UpdatedAt = c.Internal.UpdatedAt.UTC()
	if c.ConfirmedAt != nil {
		u := c.ConfirmedAt.UTC()
		c.ConfirmedAt = &u
	}
	if len(c.Metadata) == 0 {
		c.Metadata = nil
	}
	return c
}

func ledgerDump(r *storage.Record) string {
	if r == nil {
		return "<nil>"
	}
	c := ledgerNormalize(r)
	confirmed := "nil"
	if c.ConfirmedAt != nil {
		confirmed = c.ConfirmedAt.String()
	}
	c.ConfirmedAt = nil
	return fmt.Sprintf("%+v (ConfirmedAt %s)", *c, confirmed)
}

func ledgerWantEqual(t *testing.T, what string, got, want *storage.Record) {
	t.Helper()
	if got == nil || !reflect.DeepEqual(ledgerNormalize(got), ledgerNormalize(want)) {
		t.Fatalf("%s:\n got %s\nwant %s", what, ledgerDump(got), ledgerDump(want))
	}
}

func ledgerWantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
}

func ledgerTestCreateGet(t *testing.T, h *ledgerHarness) {
	pending := ledgerRecord("rt-pending", "s3:a", "avatars/1.jpg", ledgerAt(time.Hour))

	confirmed := ledgerRecord("rt-confirmed", "s3:a", "avatars/2.jpg", ledgerAt(time.Hour))
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	confirmed.Status = storage.StatusConfirmed
	at := ledgerAt(2 * time.Minute).In(zone)
	confirmed.ConfirmedAt = &at
	confirmed.CreatedAt = confirmed.CreatedAt.In(zone)
	confirmed.Internal.Reason = "size mismatch"
	confirmed.Internal.Kind = storage.KindPut

	minimal := &storage.Record{
		ID: "rt-minimal", Key: "m", Status: storage.StatusPending, CreatedAt: ledgerBase,
		Internal: storage.RecordInternal{Store: "s3:b", Kind: storage.KindPost, ExpiresAt: ledgerAt(time.Second)},
	}

	h.create(pending, confirmed, minimal)
	h.wantStored(pending)
	h.wantStored(confirmed)
	h.wantStored(minimal)

	got, err := h.l.Get(t.Context(), minimal.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ConfirmedAt != nil || len(got.Metadata) != 0 || got.SHA256 != "" {
		t.Fatalf("minimal record gained fields: %s", ledgerDump(got))
	}
}

func ledgerTestDuplicateID(t *testing.T, h *ledgerHarness) {
	orig := ledgerRecord("dup", "s3:a", "k1", ledgerAt(time.Minute))
	h.create(orig)

	again := ledgerRecord("dup", "s3:a", "k2", ledgerAt(2*time.Minute))
	again.Filename = "other.png"
	ledgerWantErr(t, "Create with an existing id", h.l.Create(t.Context(), again), storage.ErrConflict)

	h.wantStored(orig)
	_, err := h.l.GetByKey(t.Context(), "s3:a", "k2")
	ledgerWantErr(t, "GetByKey of the refused record's key", err, storage.ErrNotFound)
	h.wantDue("s3:a", ledgerAt(time.Hour), 10, "dup")
}

func ledgerTestDuplicateKey(t *testing.T, h *ledgerHarness) {
	orig := ledgerRecord("first", "s3:a", "same/key.jpg", ledgerAt(time.Minute))
	h.create(orig)

	clash := ledgerRecord("second", "s3:a", "same/key.jpg", ledgerAt(2*time.Minute))
	ledgerWantErr(t, "Create with a taken (store, key)", h.l.Create(t.Context(), clash), storage.ErrConflict)
	_, err := h.l.Get(t.Context(), "second")
	ledgerWantErr(t, "Get of the refused record", err, storage.ErrNotFound)
	h.wantStored(orig)
	h.wantDue("s3:a", ledgerAt(time.Hour), 10, "first")

	// The same key in another store is another object.
	other := ledgerRecord("third", "s3:b", "same/key.jpg", ledgerAt(time.Minute))
	h.create(other)
	h.wantStored(other)
	h.wantStored(orig)
}

func ledgerTestNotFound(t *testing.T, h *ledgerHarness) {
	h.create(ledgerRecord("present", "s3:a", "k", ledgerAt(time.Minute)))

	_, err := h.l.Get(t.Context(), "absent")
	ledgerWantErr(t, "Get", err, storage.ErrNotFound)
	_, err = h.l.GetByKey(t.Context(), "s3:a", "absent")
	ledgerWantErr(t, "GetByKey of an unknown key", err, storage.ErrNotFound)
	_, err = h.l.GetByKey(t.Context(), "s3:b", "k")
	ledgerWantErr(t, "GetByKey in another store", err, storage.ErrNotFound)

	called := false
	_, err = h.l.Update(t.Context(), "absent", func(*storage.Record) error { called = true; return nil })
	ledgerWantErr(t, "Update", err, storage.ErrNotFound)
	if called {
		t.Fatal("Update called fn for a missing record")
	}
	if _, err := h.l.Get(t.Context(), "absent"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Update of a missing record created it: %v", err)
	}
}

// ledgerScribble changes every part of r that could be shared memory.
func ledgerScribble(r *storage.Record) {
	r.Filename = "scribbled"
	r.Status = storage.StatusRejected
	r.Metadata["album"] = "scribbled"
	r.Metadata["new"] = "scribbled"
	if r.ConfirmedAt != nil {
		*r.ConfirmedAt = time.Time{}
	}
	r.Internal.Subject = "scribbled"
	r.Internal.ExpiresAt = time.Time{}
}

func ledgerTestCopies(t *testing.T, h *ledgerHarness) {
	ctx := t.Context()
	in := ledgerRecord("copy", "s3:a", "k", ledgerAt(time.Minute))
	at := ledgerBase
	in.ConfirmedAt = &at
	want := in.Clone()
	h.create(in)
	ledgerScribble(in) // the caller's record after Create
	h.wantStored(want)

	got, err := h.l.Get(ctx, "copy")
	if err != nil {
		t.Fatal(err)
	}
	ledgerScribble(got)
	h.wantStored(want)

	got, err = h.l.GetByKey(ctx, "s3:a", "k")
	if err != nil {
		t.Fatal(err)
	}
	ledgerScribble(got)
	h.wantStored(want)

	for _, r := range h.wantDue("s3:a", ledgerAt(time.Hour), 10, "copy") {
		ledgerScribble(r)
	}
	h.wantStored(want)

	var seen *storage.Record
	want.Size = 7
	got, err = h.l.Update(ctx, "copy", func(r *storage.Record) error { r.Size = 7; seen = r; return nil })
	if err != nil {
		t.Fatal(err)
	}
	ledgerWantEqual(t, "Update result", got, want)
	ledgerScribble(got)
	ledgerScribble(seen) // fn kept the record it was given
	h.wantStored(want)
}

func ledgerTestUpdate(t *testing.T, h *ledgerHarness) {
	ctx := t.Context()
	rec := ledgerRecord("upd", "s3:a", "k", ledgerAt(time.Minute))
	h.create(rec)

	confirmedAt := ledgerAt(30 * time.Second)
	want := rec.Clone()
	want.Status = storage.StatusConfirmed
	want.ConfirmedAt = &confirmedAt
	want.Size = 42
	want.Metadata["checked"] = "yes"
	want.Internal.UpdatedAt = confirmedAt

	// fn may run on another goroutine, where t.Fatal must not be called:
	// what it was given is checked afterwards.
	var given *storage.Record
	got, err := h.l.Update(ctx, "upd", func(r *storage.Record) error {
		given = r.Clone()
		r.Status = storage.StatusConfirmed
		r.ConfirmedAt = &confirmedAt
		r.Size = 42
		r.Metadata["checked"] = "yes"
		r.Internal.UpdatedAt = confirmedAt
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ledgerWantEqual(t, "record given to fn", given, rec)
	ledgerWantEqual(t, "Update result", got, want)
	h.wantStored(want)

	// A second update starts from the first one's result.
	prev := want.Clone()
	want.Internal.Reason = "second"
	got = h.update("upd", func(r *storage.Record) {
		given = r.Clone()
		r.Internal.Reason = "second"
	})
	ledgerWantEqual(t, "record given to the second fn", given, prev)
	ledgerWantEqual(t, "second Update result", got, want)
	h.wantStored(want)
}

func ledgerTestUpdateError(t *testing.T, h *ledgerHarness) {
	ctx := t.Context()
	rec := ledgerRecord("upderr", "s3:a", "k", ledgerAt(time.Minute))
	h.create(rec)

	errMine := errors.New("policy says no")
	for _, want := range []error{errMine, storage.ErrConflict, fmt.Errorf("wrapped: %w", errMine)} {
		_, err := h.l.Update(ctx, "upderr", func(r *storage.Record) error {
			r.Status = storage.StatusConfirmed
			r.Size = 1
			r.Internal.ExpiresAt = ledgerAt(time.Hour)
			return want
		})
		if err != want {
			t.Fatalf("Update returned %v (%T), want fn's error %v as is", err, err, want)
		}
		h.wantStored(rec)
		h.wantDue("s3:a", ledgerAt(2*time.Minute), 10, "upderr")
	}
}

func ledgerTestGetByKey(t *testing.T, h *ledgerHarness) {
	// Keys and stores that are prefixes of one another, and pairs whose
	// concatenations are equal, must stay apart.
	recs := []*storage.Record{
		ledgerRecord("k1", "s", "a", ledgerAt(time.Minute)),
		ledgerRecord("k2", "s", "a/b", ledgerAt(time.Minute)),
		ledgerRecord("k3", "s", "a/b/c", ledgerAt(time.Minute)),
		ledgerRecord("k4", "s", "1/x", ledgerAt(time.Minute)),
		ledgerRecord("k5", "s1", "/x", ledgerAt(time.Minute)),
		ledgerRecord("k6", "s1", "a", ledgerAt(time.Minute)),
	}
	h.create(recs...)
	for _, r := range recs {
		h.wantStored(r)
	}
	_, err := h.l.GetByKey(t.Context(), "s", "a/")
	ledgerWantErr(t, "GetByKey of a key prefix", err, storage.ErrNotFound)
}

// ledgerDueSet creates pending records p1..p5 in store "s3:a" expiring at
// base+1..5 min (inserted out of order), a confirmed record that would be
// due, and pending records in another store.
func ledgerDueSet(h *ledgerHarness) {
	h.t.Helper()
	for _, i := range []int{3, 1, 5, 2, 4} {
		h.create(ledgerRecord(fmt.Sprintf("p%d", i), "s3:a", fmt.Sprintf("due/%d", i), ledgerAt(time.Duration(i)*time.Minute)))
	}
	done := ledgerRecord("done", "s3:a", "due/done", ledgerAt(30*time.Second))
	done.Status = storage.StatusConfirmed
	at := ledgerBase
	done.ConfirmedAt = &at
	h.create(done,
		ledgerRecord("b1", "s3:b", "due/1", ledgerAt(0)),
		ledgerRecord("b2", "s3:b", "due/2", ledgerAt(time.Hour)))
}

func ledgerTestDueSweep(t *testing.T, h *ledgerHarness) {
	ledgerDueSet(h)
	m := time.Minute
	h.wantDue("s3:a", ledgerAt(10*m), 100, "p1", "p2", "p3", "p4", "p5")
	h.wantDue("s3:a", ledgerAt(10*m), 2, "p1", "p2")
	h.wantDue("s3:a", ledgerAt(3*m), 100, "p1", "p2") // before t, not at t
	h.wantDue("s3:a", ledgerAt(3*m+time.Microsecond), 100, "p1", "p2", "p3")
	h.wantDue("s3:a", ledgerAt(0), 100)
	h.wantDue("s3:b", ledgerAt(10*m), 100, "b1")
	h.wantDue("s3:b", ledgerAt(2*time.Hour), 100, "b1", "b2")
	h.wantDue("s3:unknown", ledgerAt(10*m), 100)

	recs := h.wantDue("s3:a", ledgerAt(10*m), 1, "p1")
	ledgerWantEqual(t, "DueSweep record", recs[0], ledgerRecord("p1", "s3:a", "due/1", ledgerAt(m)))
}

func ledgerTestDueFollowsUpdate(t *testing.T, h *ledgerHarness) {
	ledgerDueSet(h)
	m := time.Minute
	bound := ledgerAt(10 * m)

	h.update("p1", func(r *storage.Record) { r.Status = storage.StatusConfirmed })
	h.wantDue("s3:a", bound, 100, "p2", "p3", "p4", "p5")

	h.update("p4", func(r *storage.Record) { r.Internal.ExpiresAt = ledgerAt(-m) })
	h.wantDue("s3:a", bound, 100, "p4", "p2", "p3", "p5")

	h.update("p2", func(r *storage.Record) { r.Internal.ExpiresAt = ledgerAt(20 * m) })
	h.wantDue("s3:a", bound, 100, "p4", "p3", "p5")
	h.wantDue("s3:a", ledgerAt(30*m), 100, "p4", "p3", "p5", "p2")

	h.update("p3", func(r *storage.Record) { r.Status = storage.StatusExpired })
	h.update("p5", func(r *storage.Record) { r.Status = storage.StatusAborted })
	// Changing other fields keeps a pending record listed exactly once.
	h.update("p4", func(r *storage.Record) { r.Size++; r.Internal.UpdatedAt = ledgerBase })
	h.wantDue("s3:a", ledgerAt(30*m), 100, "p4", "p2")

	h.update("p4", func(r *storage.Record) { r.Status = storage.StatusRejected; r.Internal.Reason = "bad magic" })
	h.update("p2", func(r *storage.Record) { r.Status = storage.StatusConfirmed })
	h.wantDue("s3:a", ledgerAt(time.Hour), 100)
	h.wantDue("s3:b", bound, 100, "b1")

	// A closed record whose object may still be written (Recheck) is due
	// at its ExpiresAt, and no longer once Recheck is cleared.
	h.update("p5", func(r *storage.Record) { r.Internal.Recheck = true; r.Internal.ExpiresAt = ledgerAt(2 * m) })
	h.wantDue("s3:a", bound, 100, "p5")
	h.update("p5", func(r *storage.Record) { r.Internal.Recheck = false })
	h.wantDue("s3:a", ledgerAt(time.Hour), 100)
	// A confirmed record never is, Recheck or not.
	h.update("p2", func(r *storage.Record) { r.Internal.Recheck = true })
	h.wantDue("s3:a", ledgerAt(time.Hour), 100)
}

func ledgerTestPersistence(t *testing.T, h *ledgerHarness) {
	ledgerDueSet(h)
	h.update("p1", func(r *storage.Record) { r.Status = storage.StatusConfirmed })
	h.update("p5", func(r *storage.Record) { r.Internal.ExpiresAt = ledgerAt(-time.Minute) })
	want := map[string]*storage.Record{}
	for _, id := range []string{"p1", "p2", "p3", "p4", "p5", "done", "b1", "b2"} {
		r, err := h.l.Get(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		want[id] = r
	}

	h.reopen()
	for _, r := range want {
		h.wantStored(r)
	}
	h.wantDue("s3:a", ledgerAt(time.Hour), 100, "p5", "p2", "p3", "p4")
	h.wantDue("s3:b", ledgerAt(time.Hour), 100, "b1")
	ledgerWantErr(t, "Create of a stored id after reopening",
		h.l.Create(t.Context(), ledgerRecord("p2", "s3:a", "fresh", ledgerBase)), storage.ErrConflict)
	ledgerWantErr(t, "Create of a stored key after reopening",
		h.l.Create(t.Context(), ledgerRecord("fresh", "s3:a", "due/2", ledgerBase)), storage.ErrConflict)

	// The reopened ledger takes writes, and they persist too.
	h.update("p2", func(r *storage.Record) { r.Status = storage.StatusExpired })
	h.reopen()
	h.wantDue("s3:a", ledgerAt(time.Hour), 100, "p5", "p3", "p4")
}

func ledgerTestConcurrent(t *testing.T, h *ledgerHarness) {
	const workers, each = 16, 12
	ctx := t.Context()
	h.create(ledgerRecord("counter", "s3:a", "counter", ledgerAt(time.Hour)))

	var wg sync.WaitGroup
	var mu sync.Mutex
	contendedWins := 0
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("w%02d-%02d", w, i)
				if err := h.l.Create(ctx, ledgerRecord(id, "s3:a", "c/"+id, ledgerAt(time.Duration(w*each+i)*time.Second))); err != nil {
					t.Errorf("Create(%s): %v", id, err)
					return
				}
				// Lost updates would show in the final count.
				if _, err := h.l.Update(ctx, "counter", func(r *storage.Record) error { r.Size++; return nil }); err != nil {
					t.Errorf("Update(counter): %v", err)
					return
				}
				if i%2 == 0 {
					if _, err := h.l.Update(ctx, id, func(r *storage.Record) error { r.Status = storage.StatusConfirmed; return nil }); err != nil {
						t.Errorf("Update(%s): %v", id, err)
						return
					}
				}
			}
			// Every worker races for one key; exactly one may win.
			err := h.l.Create(ctx, ledgerRecord(fmt.Sprintf("race-%02d", w), "s3:a", "race", ledgerAt(time.Hour)))
			switch {
			case err == nil:
				mu.Lock()
				contendedWins++
				mu.Unlock()
			case !errors.Is(err, storage.ErrConflict):
				t.Errorf("racing Create: %v, want nil or ErrConflict", err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if contendedWins != 1 {
		t.Fatalf("%d racing creates of one key succeeded, want 1", contendedWins)
	}

	counter, err := h.l.Get(ctx, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(123456789 + workers*each); counter.Size != want {
		t.Fatalf("counter = %d after %d concurrent increments, want %d", counter.Size, workers*each, want)
	}
	var due []string
	for w := range workers {
		for i := range each {
			id := fmt.Sprintf("w%02d-%02d", w, i)
			r, err := h.l.Get(ctx, id)
			if err != nil {
				t.Fatalf("Get(%s): %v", id, err)
			}
			wantStatus := storage.StatusPending
			if i%2 == 0 {
				wantStatus = storage.StatusConfirmed
			} else {
				due = append(due, id)
			}
			if r.Status != wantStatus {
				t.Fatalf("%s: status %s, want %s", id, r.Status, wantStatus)
			}
		}
	}
	// Ids were numbered in expiry order.
	h.wantDue("s3:a", ledgerAt(time.Duration(workers*each)*time.Second), len(due)+1, due...)
}

// ledgerTestDelete: Delete removes the record from every lookup, DueSweep
// included, only when check allows it, and frees its key.
func ledgerTestDelete(t *testing.T, h *ledgerHarness) {
	ctx := t.Context()
	gone := ledgerRecord("del-a", "s1", "k/a", ledgerAt(0))
	kept := ledgerRecord("del-b", "s1", "k/b", ledgerAt(0))
	for _, r := range []*storage.Record{gone, kept} {
		if err := h.l.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	errNo := errors.New("not now")
	if err := h.l.Delete(ctx, "del-b", func(r *storage.Record) error {
		if r.ID != "del-b" {
			t.Errorf("check got %s", r.ID)
		}
		return errNo
	}); !errors.Is(err, errNo) {
		t.Fatalf("Delete refused by check: %v", err)
	}
	if err := h.l.Delete(ctx, "del-a", func(*storage.Record) error { return nil }); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	ledgerWantErr(t, "Get after Delete", func() error { _, err := h.l.Get(ctx, "del-a"); return err }(), storage.ErrNotFound)
	ledgerWantErr(t, "GetByKey after Delete", func() error { _, err := h.l.GetByKey(ctx, "s1", "k/a"); return err }(), storage.ErrNotFound)
	ledgerWantErr(t, "Delete again", h.l.Delete(ctx, "del-a", func(*storage.Record) error { return nil }), storage.ErrNotFound)
	h.wantDue("s1", ledgerAt(time.Hour), 10, "del-b")
	h.wantStored(kept)
	// The key is free again.
	if err := h.l.Create(ctx, ledgerRecord("del-c", "s1", "k/a", ledgerAt(0))); err != nil {
		t.Fatalf("Create on a deleted record's key: %v", err)
	}
}

// ledgerTestList: filters, descending id order, and pages that neither
// skip nor repeat a record.
func ledgerTestList(t *testing.T, h *ledgerHarness) {
	ctx := t.Context()
	var all []string
	for i := range 9 {
		r := ledgerRecord(fmt.Sprintf("list-%02d", i), "s1", fmt.Sprintf("k/%d", i), ledgerAt(0))
		r.CreatedAt = ledgerAt(time.Duration(i) * time.Minute)
		if i%3 == 0 {
			r.Internal.Route = "other"
		}
		if i%2 == 0 {
			r.Internal.Subject = "alice"
		}
		if i == 4 {
			r.Status = storage.StatusConfirmed
		}
		if err := h.l.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
		all = append([]string{r.ID}, all...)
	}
	list := func(q storage.ListQuery) []string {
		t.Helper()
		var ids []string
		for page := 0; ; page++ {
			recs, next, err := h.l.List(ctx, q)
			if err != nil {
				t.Fatalf("List(%+v): %v", q, err)
			}
			for _, r := range recs {
				ids = append(ids, r.ID)
			}
			if next == "" {
				return ids
			}
			if page > 20 || len(recs) == 0 {
				t.Fatalf("List(%+v) does not end", q)
			}
			q.After = next
		}
	}
	for _, tc := range []struct {
		q    storage.ListQuery
		want []string
	}{
		{storage.ListQuery{Limit: 100}, all},
		{storage.ListQuery{Limit: 2}, all},
		{storage.ListQuery{Limit: 1, Route: "other"}, []string{"list-06", "list-03", "list-00"}},
		{storage.ListQuery{Limit: 2, Subject: "alice"}, []string{"list-08", "list-06", "list-04", "list-02", "list-00"}},
		{storage.ListQuery{Limit: 3, Status: storage.StatusConfirmed}, []string{"list-04"}},
		{storage.ListQuery{Limit: 3, Before: ledgerAt(3 * time.Minute), Route: "avatars"}, []string{"list-02", "list-01"}},
		{storage.ListQuery{Limit: 3, Subject: "nobody"}, nil},
	} {
		if got := list(tc.q); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("List(%+v) = %v, want %v", tc.q, got, tc.want)
		}
	}
}
