package storagetest

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// RunBatchUpdate is the conformance suite of storage.BatchUpdater: each
// record updated as Update would, a failure kept to its own record, the
// current record given to fn, every write durable and in its indexes,
// events and usage. open is as for RunLedger; the ledger it returns must
// implement storage.BatchUpdater (and is checked for storage.Outbox and
// storage.QuotaLedger where it implements them).
func RunBatchUpdate(t *testing.T, open func(t *testing.T, dir string) storage.Ledger) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, h *batchHarness)
	}{
		{"EachAlone", batchTestEachAlone},
		{"ConflictAlone", batchTestConflictAlone},
		{"CurrentRecord", batchTestCurrentRecord},
		{"RepeatedID", batchTestRepeatedID},
		{"Persistence", batchTestPersistence},
		{"Concurrent", batchTestConcurrent},
		{"Events", batchTestEvents},
		{"Usage", batchTestUsage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &batchHarness{ledgerHarness{newHarness(t, open)}}
			if _, ok := h.l.(storage.BatchUpdater); !ok {
				t.Fatalf("%T does not implement storage.BatchUpdater", h.l)
			}
			tc.run(t, h)
		})
	}
}

type batchHarness struct{ ledgerHarness }

func (h *batchHarness) updateEach(ids []string, fn func(int, *storage.Record) error) ([]*storage.Record, []error) {
	h.t.Helper()
	recs, errs := h.l.(storage.BatchUpdater).UpdateEach(h.t.Context(), ids, fn)
	if len(recs) != len(ids) || len(errs) != len(ids) {
		h.t.Fatalf("UpdateEach of %d ids returned %d records and %d errors", len(ids), len(recs), len(errs))
	}
	for i := range ids {
		if (recs[i] == nil) == (errs[i] == nil) {
			h.t.Fatalf("UpdateEach, %s: record %v and error %v; want exactly one", ids[i], recs[i] != nil, errs[i])
		}
	}
	return recs, errs
}

// expire is what the sweeper does to a due record: expired, due again
// later for one more deletion of its object.
func expire(r *storage.Record, at time.Time) {
	r.Status = storage.StatusExpired
	r.Internal.UpdatedAt = at
	r.Internal.Recheck = true
	r.Internal.ExpiresAt = at.Add(time.Hour)
}

// batchTestEachAlone: records updated, a missing one and one fn refuses
// fail alone, and an empty batch does nothing.
func batchTestEachAlone(t *testing.T, h *batchHarness) {
	for i := range 5 {
		h.create(ledgerRecord(fmt.Sprintf("b%d", i), "s3:a", fmt.Sprintf("k%d", i), ledgerAt(time.Duration(i)*time.Second)))
	}
	errMine := errors.New("policy says no")
	batch := []string{"b0", "missing", "b1", "b2", "\x00bad", "b3"}
	var called []int
	recs, errs := h.updateEach(batch, func(i int, r *storage.Record) error {
		called = append(called, i) // fn calls never run concurrently
		if r.ID != batch[i] {
			return fmt.Errorf("fn(%d) given %s, want %s", i, r.ID, batch[i])
		}
		if r.ID == "b2" {
			r.Status = storage.StatusConfirmed // not stored: fn refuses
			return errMine
		}
		expire(r, ledgerAt(time.Minute))
		r.Internal.Reason = "batch " + strconv.Itoa(i)
		return nil
	})
	if len(called) < 4 {
		t.Fatalf("fn ran for indexes %v, want at least those of b0, b1, b2, b3", called)
	}
	for i, id := range batch {
		switch id {
		case "missing", "\x00bad":
			ledgerWantErr(t, "UpdateEach of "+strconv.Quote(id), errs[i], storage.ErrNotFound)
		case "b2":
			if errs[i] != errMine {
				t.Fatalf("UpdateEach of b2: %v (%T), want fn's error as is", errs[i], errs[i])
			}
		default:
			if errs[i] != nil {
				t.Fatalf("UpdateEach of %s: %v", id, errs[i])
			}
			want := ledgerRecord(id, "s3:a", "k"+id[1:], time.Time{})
			expire(want, ledgerAt(time.Minute))
			want.Internal.Reason = "batch " + strconv.Itoa(i)
			ledgerWantEqual(t, "UpdateEach result of "+id, recs[i], want)
			h.wantStored(want)
		}
	}
	// b2 is as it was; b4 was not named. Both are still due now, the
	// expired ones an hour later.
	h.wantDue("s3:a", ledgerAt(10*time.Second), 10, "b2", "b4")
	h.wantDue("s3:a", ledgerAt(2*time.Hour), 10, "b2", "b4", "b0", "b1", "b3")

	// The copies returned are the caller's.
	recs[0].Internal.Reason = "scribbled"
	recs[0].Metadata["album"] = "scribbled"
	if got, err := h.l.Get(t.Context(), "b0"); err != nil || got.Internal.Reason != "batch 0" || got.Metadata["album"] != "holiday" {
		t.Fatalf("a returned record shares memory with the ledger: %v %v", got, err)
	}

	recs, errs = h.updateEach(nil, func(int, *storage.Record) error {
		t.Error("fn called for an empty batch")
		return nil
	})
	if len(recs) != 0 || len(errs) != 0 {
		t.Fatalf("empty batch: %v %v", recs, errs)
	}
}

// batchTestConflictAlone: an update that moves its record onto a key
// another record holds fails with ErrConflict, alone.
func batchTestConflictAlone(t *testing.T, h *batchHarness) {
	for _, id := range []string{"x1", "x2", "x3"} {
		h.create(ledgerRecord(id, "s3:a", "k"+id, ledgerAt(0)))
	}
	recs, errs := h.updateEach([]string{"x1", "x2", "x3"}, func(i int, r *storage.Record) error {
		if r.ID == "x2" {
			r.Key = "kx3" // taken
		}
		r.Internal.Reason = "run " + strconv.Itoa(i)
		return nil
	})
	ledgerWantErr(t, "moving x2 onto x3's key", errs[1], storage.ErrConflict)
	for _, i := range []int{0, 2} {
		if errs[i] != nil || recs[i].Internal.Reason != "run "+strconv.Itoa(i) {
			t.Fatalf("update %d beside the conflict: %v", i, errs[i])
		}
		h.wantStored(recs[i])
	}
	want := ledgerRecord("x2", "s3:a", "kx2", ledgerAt(0))
	h.wantStored(want)
}

// batchTestCurrentRecord: fn is given the record as stored when the
// update runs, not as the caller listed it.
func batchTestCurrentRecord(t *testing.T, h *batchHarness) {
	h.create(ledgerRecord("cur", "s3:a", "k", ledgerAt(0)))
	listed := h.wantDue("s3:a", ledgerAt(time.Second), 10, "cur")
	confirmedAt := ledgerAt(time.Second)
	changed := h.update("cur", func(r *storage.Record) { // lands after the listing
		r.Status = storage.StatusConfirmed
		r.ConfirmedAt = &confirmedAt
	})
	var given *storage.Record
	recs, errs := h.updateEach([]string{listed[0].ID}, func(_ int, r *storage.Record) error {
		given = r.Clone()
		if r.Status == storage.StatusPending {
			expire(r, ledgerAt(time.Minute))
		}
		return nil
	})
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
	ledgerWantEqual(t, "record given to fn", given, changed)
	ledgerWantEqual(t, "UpdateEach result", recs[0], changed)
	h.wantStored(changed)
}

// batchTestRepeatedID: an id named twice is updated twice, the second run
// starting from the first one's result.
func batchTestRepeatedID(t *testing.T, h *batchHarness) {
	h.create(ledgerRecord("rep", "s3:a", "k", ledgerAt(0)))
	recs, errs := h.updateEach([]string{"rep", "rep", "rep"}, func(i int, r *storage.Record) error {
		r.Metadata["runs"] += strconv.Itoa(i)
		return nil
	})
	for i, want := range []string{"0", "01", "012"} {
		if errs[i] != nil || recs[i].Metadata["runs"] != want {
			t.Fatalf("update %d: %v, runs %q, want %q", i, errs[i], recs[i].Metadata["runs"], want)
		}
	}
	if got, err := h.l.Get(t.Context(), "rep"); err != nil || got.Metadata["runs"] != "012" {
		t.Fatalf("stored runs %q (%v), want 012", got.Metadata["runs"], err)
	}
}

// batchTestPersistence: what UpdateEach reported stored is there after a
// reopen, indexes included.
func batchTestPersistence(t *testing.T, h *batchHarness) {
	var ids []string
	for i := range 50 {
		r := ledgerRecord(fmt.Sprintf("p%02d", i), "s3:a", fmt.Sprintf("k%02d", i), ledgerAt(0))
		h.create(r)
		ids = append(ids, r.ID)
	}
	_, errs := h.updateEach(ids, func(_ int, r *storage.Record) error {
		expire(r, ledgerAt(time.Minute))
		return nil
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", ids[i], err)
		}
	}
	h.reopen()
	for _, id := range ids {
		got, err := h.l.Get(t.Context(), id)
		if err != nil || got.Status != storage.StatusExpired || !got.Internal.Recheck {
			t.Fatalf("%s after reopen: %v %v", id, got, err)
		}
	}
	h.wantDue("s3:a", ledgerAt(time.Second), 10)
	due := h.wantDue("s3:a", ledgerAt(2*time.Hour), 100, ids...)
	if len(due) != len(ids) {
		t.Fatalf("%d due after the hour, want %d", len(due), len(ids))
	}
}

// batchTestConcurrent: batches and single updates of the same records at
// once lose no update.
func batchTestConcurrent(t *testing.T, h *batchHarness) {
	const records, batches, singles = 20, 8, 40
	var ids []string
	for i := range records {
		r := ledgerRecord(fmt.Sprintf("c%02d", i), "s3:a", fmt.Sprintf("k%02d", i), ledgerAt(0))
		r.Metadata = map[string]string{"n": "0"}
		h.create(r)
		ids = append(ids, r.ID)
	}
	bump := func(r *storage.Record) error {
		n, err := strconv.Atoi(r.Metadata["n"])
		if err != nil {
			return err
		}
		r.Metadata["n"] = strconv.Itoa(n + 1)
		return nil
	}
	var wg sync.WaitGroup
	errc := make(chan error, batches*records+singles)
	for g := range batches {
		wg.Go(func() {
			// Each batch in its own order: backends that lock must not
			// deadlock on it.
			order := append([]string(nil), ids...)
			if g%2 == 1 {
				for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
					order[i], order[j] = order[j], order[i]
				}
			}
			_, errs := h.l.(storage.BatchUpdater).UpdateEach(t.Context(), order, func(_ int, r *storage.Record) error { return bump(r) })
			for _, err := range errs {
				if err != nil {
					errc <- err
				}
			}
		})
	}
	for i := range singles {
		wg.Go(func() {
			if _, err := h.l.Update(t.Context(), ids[i%records], bump); err != nil {
				errc <- err
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	for i, id := range ids {
		got, err := h.l.Get(t.Context(), id)
		want := batches + singles/records
		if i < singles%records {
			want++
		}
		if err != nil || got.Metadata["n"] != strconv.Itoa(want) {
			t.Fatalf("%s: n = %v (%v), want %d: an update was lost", id, got.Metadata["n"], err, want)
		}
	}
}

// batchTestEvents: a status change made by UpdateEach puts its event in
// the outbox, as Update does; a refused change puts none.
func batchTestEvents(t *testing.T, h *batchHarness) {
	ob, ok := h.l.(storage.Outbox)
	if !ok {
		t.Skipf("%T has no outbox", h.l)
	}
	for _, id := range []string{"ev1", "ev2", "ev3"} {
		r := ledgerRecord(id, "s3:a", "k"+id, ledgerAt(0))
		r.Internal.Notify = true
		r.Internal.Route = "hooks"
		h.create(r)
	}
	_, errs := h.updateEach([]string{"ev1", "ev2", "ev3"}, func(_ int, r *storage.Record) error {
		if r.ID == "ev2" {
			expire(r, ledgerAt(time.Minute))
			return errors.New("refused")
		}
		expire(r, ledgerAt(time.Minute))
		return nil
	})
	if errs[0] != nil || errs[1] == nil || errs[2] != nil {
		t.Fatalf("errors %v", errs)
	}
	evs, err := ob.DueEvents(t.Context(), "hooks", time.Now().Add(time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, ev := range evs {
		if ev.Type != storage.EventExpired || ev.Record == nil || ev.Record.Status != storage.StatusExpired {
			t.Fatalf("event %+v", ev)
		}
		got[ev.Record.ID] = true
	}
	if len(evs) != 2 || !got["ev1"] || !got["ev3"] {
		t.Fatalf("events for %v, want ev1 and ev3", got)
	}
}

// batchTestUsage: usage follows the records UpdateEach changes, several
// of one subject in one batch included.
func batchTestUsage(t *testing.T, h *batchHarness) {
	ql, ok := h.l.(storage.QuotaLedger)
	if !ok {
		t.Skipf("%T keeps no usage", h.l)
	}
	qh := &quotaHarness{&harness[storage.QuotaLedger]{t: t, l: ql}}
	var ids []string
	var first *storage.Record
	for range 6 {
		r := quotaRecord(quotaAt(0), 100)
		h.create(r)
		ids = append(ids, r.ID)
		if first == nil {
			first = r
		}
	}
	qh.wantUsage(first, 6, 600, 0, 0)
	confirmedAt := quotaAt(time.Minute)
	_, errs := h.updateEach(ids, func(i int, r *storage.Record) error {
		switch i % 3 {
		case 0:
			expire(r, confirmedAt)
		case 1:
			r.Status = storage.StatusConfirmed
			r.ConfirmedAt = &confirmedAt
			r.Internal.UpdatedAt = confirmedAt
		case 2:
			return errors.New("left pending")
		}
		return nil
	})
	for i, err := range errs {
		if (err != nil) != (i%3 == 2) {
			t.Fatalf("update %d: %v", i, err)
		}
	}
	qh.wantUsage(first, 2, 200, 2, 200)
}
