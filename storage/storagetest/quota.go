package storagetest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// RunQuota is the conformance suite of storage.QuotaLedger: limits checked
// atomically with the record write, usage that follows every record change
// and survives reopening. open is as for RunLedger.
func RunQuota(t *testing.T, open func(t *testing.T, dir string) storage.QuotaLedger) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, h *quotaHarness)
	}{
		{"Pending", quotaTestPending},
		{"PendingFreed", quotaTestPendingFreed},
		{"PendingBytes", quotaTestPendingBytes},
		{"UploadsTotal", quotaTestUploadsTotal},
		{"UploadsWindow", quotaTestUploadsWindow},
		{"BytesWindow", quotaTestBytesWindow},
		{"Rate", quotaTestRate},
		{"RefusalWritesNothing", quotaTestRefusalWritesNothing},
		{"UsageFollowsRecords", quotaTestUsageFollowsRecords},
		{"Persistence", quotaTestPersistence},
		{"Concurrent", quotaTestConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, &quotaHarness{newHarness(t, open)})
		})
	}
}

type quotaHarness struct{ *harness[storage.QuotaLedger] }

// quotaBase is whole seconds so that every backend keeps times exactly.
var quotaBase = time.Date(2032, 5, 6, 7, 8, 9, 0, time.UTC)

func quotaAt(d time.Duration) time.Time { return quotaBase.Add(d) }

var quotaN atomic.Int64

// quotaRecord is a pending PUT of size bytes by subject alice on route r,
// created at at; size 0 is an unsized upload whose policy allows 1000.
func quotaRecord(at time.Time, size int64) *storage.Record {
	id := fmt.Sprintf("q%06d", quotaN.Add(1))
	rec := &storage.Record{
		ID: id, Key: "q/" + id, Status: storage.StatusPending, Filename: id + ".bin", Size: size,
		Type: "application/octet-stream", CreatedAt: at,
		Internal: storage.RecordInternal{
			Subject: "alice", Source: "https://id.example", Store: "s3:q", Route: "r",
			Kind: storage.KindPut, ExpiresAt: at.Add(time.Hour), UpdatedAt: at,
		},
	}
	if size == 0 {
		rec.Internal.Kind = storage.KindMultipart
		rec.Internal.MinSize, rec.Internal.MaxSize = 1, 1000
	}
	return rec
}

// as returns rec owned by another subject, source or route.
func as(rec *storage.Record, route, source, subject string) *storage.Record {
	rec.Internal.Route, rec.Internal.Source, rec.Internal.Subject = route, source, subject
	return rec
}

// within creates rec under lim and fails the test unless it fits.
func (h *quotaHarness) within(rec *storage.Record, lim storage.Limits) *storage.Record {
	h.t.Helper()
	if err := h.l.CreateWithin(h.t.Context(), rec, lim); err != nil {
		h.t.Fatalf("CreateWithin(%s) under %+v: %v", rec.ID, lim, err)
	}
	return rec
}

// refused creates rec under lim, expects a refusal by limit and returns it.
func (h *quotaHarness) refused(rec *storage.Record, lim storage.Limits, limit string) *storage.QuotaError {
	h.t.Helper()
	err := h.l.CreateWithin(h.t.Context(), rec, lim)
	var qe *storage.QuotaError
	if !errors.As(err, &qe) || !errors.Is(err, storage.ErrQuota) {
		h.t.Fatalf("CreateWithin(%s) under %+v: %v, want a quota error", rec.ID, lim, err)
	}
	if qe.Limit != limit {
		h.t.Fatalf("refused by %q (%v), want %q", qe.Limit, qe, limit)
	}
	if _, err := h.l.Get(h.t.Context(), rec.ID); !errors.Is(err, storage.ErrNotFound) {
		h.t.Fatalf("a refused create stored its record: %v", err)
	}
	return qe
}

func (h *quotaHarness) usage(rec *storage.Record) *storage.Usage {
	h.t.Helper()
	u, err := h.l.Usage(h.t.Context(), storage.QuotaKeyOf(rec))
	if err != nil {
		h.t.Fatalf("Usage: %v", err)
	}
	return u
}

// wantUsage asserts the counters of rec's subject.
func (h *quotaHarness) wantUsage(rec *storage.Record, pending, pendingBytes, uploads, bytes int64) {
	h.t.Helper()
	u := h.usage(rec)
	if u.Pending != pending || u.PendingBytes != pendingBytes || u.Uploads != uploads || u.Bytes != bytes {
		h.t.Fatalf("usage of %v: pending %d (%d bytes), confirmed %d (%d bytes); want %d (%d), %d (%d)",
			storage.QuotaKeyOf(rec), u.Pending, u.PendingBytes, u.Uploads, u.Bytes, pending, pendingBytes, uploads, bytes)
	}
}

func (h *quotaHarness) setStatus(rec *storage.Record, st storage.Status, at time.Time) *storage.Record {
	h.t.Helper()
	return h.update(rec.ID, func(r *storage.Record) {
		r.Status = st
		r.Internal.UpdatedAt = at
		if st == storage.StatusConfirmed {
			r.ConfirmedAt = &at
			if r.Size == 0 {
				r.Size = 300 // what storage held
			}
		}
	})
}

func quotaTestPending(t *testing.T, h *quotaHarness) {
	lim := storage.Limits{Pending: 3}
	now := quotaAt(0)
	for range 3 {
		h.within(quotaRecord(now, 10), lim)
	}
	e := h.refused(quotaRecord(now, 10), lim, storage.LimitPending)
	if e.Max != 3 || e.Used != 3 || e.RetryAfter != 0 {
		t.Fatalf("refusal %+v: want max 3, used 3, no retry (waiting alone does not help)", e)
	}
	// Other subjects, sources and routes have their own counts.
	h.within(as(quotaRecord(now, 10), "r", "https://id.example", "bob"), lim)
	h.within(as(quotaRecord(now, 10), "r", "basic_auth", "alice"), lim)
	h.within(as(quotaRecord(now, 10), "other", "https://id.example", "alice"), lim)
	// Without limits, Create always fits, and it counts.
	h.create(quotaRecord(now, 10))
	h.wantUsage(quotaRecord(now, 0), 4, 40, 0, 0)
	h.refused(quotaRecord(now, 10), storage.Limits{Pending: 4}, storage.LimitPending)
	h.within(quotaRecord(now, 10), storage.Limits{Pending: 5})
}

func quotaTestPendingFreed(t *testing.T, h *quotaHarness) {
	lim := storage.Limits{Pending: 4}
	now := quotaAt(0)
	var recs []*storage.Record
	for range 4 {
		recs = append(recs, h.within(quotaRecord(now, 10), lim))
	}
	h.refused(quotaRecord(now, 10), lim, storage.LimitPending)
	// Each way out of pending frees a place: confirmed, rejected, aborted,
	// expired, and deleting a pending record.
	for i, st := range []storage.Status{storage.StatusConfirmed, storage.StatusRejected, storage.StatusAborted, storage.StatusExpired} {
		h.setStatus(recs[i], st, quotaAt(time.Minute))
		h.within(quotaRecord(now, 10), lim)
		h.refused(quotaRecord(now, 10), lim, storage.LimitPending)
	}
	h.wantUsage(recs[0], 4, 40, 1, 10)
	// An update that keeps the status moves nothing.
	pending := h.within(quotaRecord(now, 0), storage.Limits{})
	h.update(pending.ID, func(r *storage.Record) { r.Internal.ExpiresAt = r.Internal.ExpiresAt.Add(time.Hour) })
	h.wantUsage(recs[0], 5, 1040, 1, 10)
	if err := h.l.Delete(t.Context(), pending.ID, func(*storage.Record) error { return nil }); err != nil {
		t.Fatal(err)
	}
	h.wantUsage(recs[0], 4, 40, 1, 10)
	// Deleting a terminal record (retention) takes no confirmation back.
	if err := h.l.Delete(t.Context(), recs[0].ID, func(*storage.Record) error { return nil }); err != nil {
		t.Fatal(err)
	}
	h.wantUsage(recs[0], 4, 40, 1, 10)
	// Leaving a terminal status again counts nothing twice.
	h.setStatus(recs[1], storage.StatusConfirmed, quotaAt(time.Minute))
	h.setStatus(recs[1], storage.StatusConfirmed, quotaAt(2*time.Minute))
	h.wantUsage(recs[0], 4, 40, 2, 20)
}

func quotaTestPendingBytes(t *testing.T, h *quotaHarness) {
	lim := storage.Limits{PendingBytes: 2500}
	now := quotaAt(0)
	a := h.within(quotaRecord(now, 0), lim) // unsized: counts its policy's 1000
	h.within(quotaRecord(now, 1000), lim)
	e := h.refused(quotaRecord(now, 501), lim, storage.LimitPendingBytes)
	if e.Used != 2000 || e.Need != 501 || e.Max != 2500 || e.RetryAfter != 0 {
		t.Fatalf("refusal %+v", e)
	}
	h.within(quotaRecord(now, 500), lim)
	h.refused(quotaRecord(now, 1), lim, storage.LimitPendingBytes)
	// An unsized upload confirmed with 300 bytes frees all of its 1000.
	h.setStatus(a, storage.StatusConfirmed, quotaAt(time.Minute))
	h.wantUsage(a, 2, 1500, 1, 300)
	h.within(quotaRecord(now, 1000), lim)
	h.refused(quotaRecord(now, 1), lim, storage.LimitPendingBytes)
	// Larger than the limit alone: refused, and waiting does not help.
	if e := h.refused(as(quotaRecord(now, 2501), "r", "x", "carol"), lim, storage.LimitPendingBytes); e.RetryAfter != 0 {
		t.Fatalf("refusal %+v", e)
	}
}

func quotaTestUploadsTotal(t *testing.T, h *quotaHarness) {
	lim := storage.Limits{Uploads: 2}
	a := h.within(quotaRecord(quotaAt(0), 10), lim)
	h.within(quotaRecord(quotaAt(0), 10), lim)
	// Pending uploads count: each may still be confirmed.
	h.refused(quotaRecord(quotaAt(0), 10), lim, storage.LimitUploads)
	h.setStatus(a, storage.StatusAborted, quotaAt(time.Minute))
	b := h.within(quotaRecord(quotaAt(time.Minute), 10), lim)
	h.setStatus(b, storage.StatusConfirmed, quotaAt(2*time.Minute))
	e := h.refused(quotaRecord(quotaAt(1000*time.Hour), 10), lim, storage.LimitUploads)
	if e.Window != 0 || e.RetryAfter != 0 || e.Used != 2 {
		t.Fatalf("refusal %+v: in total, waiting does not help", e)
	}
}

func quotaTestUploadsWindow(t *testing.T, h *quotaHarness) {
	lim := storage.Limits{Uploads: 3, UploadsWindow: time.Hour}
	var first *storage.Record
	for i := range 3 {
		at := quotaAt(time.Duration(i) * 10 * time.Minute)
		r := h.within(quotaRecord(at, 10), lim)
		h.setStatus(r, storage.StatusConfirmed, at.Add(time.Minute))
		if i == 0 {
			first = r
		}
	}
	now := quotaAt(30 * time.Minute)
	e := h.refused(quotaRecord(now, 10), lim, storage.LimitUploads)
	// The first confirmation (at 1m) leaves the window at 1h1m, or at most
	// a grain (a 64th of the window) later.
	want := quotaAt(61 * time.Minute).Sub(now)
	if e.Window != time.Hour || e.RetryAfter < want || e.RetryAfter > want+time.Hour/64+time.Second {
		t.Fatalf("refusal %+v: retry after %s, want %s to %s", e, e.RetryAfter, want, want+time.Hour/64)
	}
	// Refused until then; fits once it passed.
	h.refused(quotaRecord(now.Add(e.RetryAfter-time.Second), 10), lim, storage.LimitUploads)
	h.within(quotaRecord(now.Add(e.RetryAfter), 10), lim)
	// That one is pending and counts: the next waits for the second
	// confirmation to leave.
	e2 := h.refused(quotaRecord(now.Add(e.RetryAfter), 10), lim, storage.LimitUploads)
	if e2.RetryAfter <= 0 || e2.RetryAfter > 10*time.Minute+time.Hour/64+time.Second {
		t.Fatalf("second refusal %+v", e2)
	}
	// Totals keep counting whatever the window says.
	h.wantUsage(first, 1, 10, 3, 30)
	// Pending uploads beyond the limit: waiting for the window does not
	// help, they must end first.
	for range 2 {
		h.within(as(quotaRecord(quotaAt(0), 10), "r", "x", "bob"), storage.Limits{})
	}
	if e := h.refused(as(quotaRecord(quotaAt(0), 10), "r", "x", "bob"), storage.Limits{Uploads: 2, UploadsWindow: time.Hour}, storage.LimitUploads); e.RetryAfter != 0 {
		t.Fatalf("refusal by pending uploads %+v: want no retry", e)
	}
}

func quotaTestBytesWindow(t *testing.T, h *quotaHarness) {
	lim := storage.Limits{Bytes: 1000, BytesWindow: 24 * time.Hour}
	r := h.within(quotaRecord(quotaAt(0), 600), lim)
	h.setStatus(r, storage.StatusConfirmed, quotaAt(time.Minute))
	now := quotaAt(time.Hour)
	h.within(quotaRecord(now, 300), lim)
	e := h.refused(quotaRecord(now, 101), lim, storage.LimitBytes)
	if e.Used != 900 || e.Need != 101 || e.Window != 24*time.Hour {
		t.Fatalf("refusal %+v", e)
	}
	want := quotaAt(24*time.Hour + time.Minute).Sub(now)
	if e.RetryAfter < want || e.RetryAfter > want+24*time.Hour/64+time.Second {
		t.Fatalf("retry after %s, want %s plus at most a grain", e.RetryAfter, want)
	}
	h.within(quotaRecord(now, 100), lim)
	h.within(quotaRecord(now.Add(e.RetryAfter), 600), lim)
	// A file larger than the limit never fits.
	if e := h.refused(as(quotaRecord(now, 1001), "r", "x", "bob"), lim, storage.LimitBytes); e.RetryAfter != 0 {
		t.Fatalf("refusal %+v: want no retry", e)
	}
}

func quotaTestRate(t *testing.T, h *quotaHarness) {
	lim := storage.Limits{Rate: 2, RateWindow: time.Minute, Burst: 3}
	now := quotaAt(0)
	for range 3 {
		h.within(quotaRecord(now, 1), lim)
	}
	e := h.refused(quotaRecord(now, 1), lim, storage.LimitRate)
	if e.RetryAfter != 30*time.Second {
		t.Fatalf("refusal %+v: want retry after 30s (2 per minute)", e)
	}
	h.refused(quotaRecord(now.Add(29*time.Second), 1), lim, storage.LimitRate)
	h.within(quotaRecord(now.Add(30*time.Second), 1), lim)
	h.refused(quotaRecord(now.Add(30*time.Second), 1), lim, storage.LimitRate)
	// Another subject has its own bucket.
	h.within(as(quotaRecord(now, 1), "r", "x", "bob"), lim)
	// The bucket refills to its burst, no further.
	later := now.Add(time.Hour)
	for range 3 {
		h.within(quotaRecord(later, 1), lim)
	}
	h.refused(quotaRecord(later, 1), lim, storage.LimitRate)
	// A clock behind the last create's refills nothing and breaks nothing.
	h.refused(quotaRecord(now, 1), lim, storage.LimitRate)
	if got := h.usage(quotaRecord(now, 1)).TokensLeft(lim, later.Add(30*time.Second)); got != 1 {
		t.Fatalf("tokens 30s after emptying: %v, want 1", got)
	}
}

func quotaTestRefusalWritesNothing(t *testing.T, h *quotaHarness) {
	// Pending refuses: the rate token that would have been taken stays.
	lim := storage.Limits{Pending: 1, Rate: 2, RateWindow: time.Hour}
	now := quotaAt(0)
	a := h.within(quotaRecord(now, 5), lim)
	before := h.usage(a)
	for range 5 {
		h.refused(quotaRecord(now, 5), lim, storage.LimitPending)
	}
	if after := h.usage(a); after.TokensLeft(lim, now) != before.TokensLeft(lim, now) || after.Pending != 1 {
		t.Fatalf("refusals changed the usage: %+v, was %+v", after, before)
	}
	h.setStatus(a, storage.StatusAborted, now)
	h.within(quotaRecord(now, 5), lim)
	// Both limits refuse: the one waiting does not fix is named.
	e := h.refused(quotaRecord(now, 5), lim, storage.LimitPending)
	if e.RetryAfter != 0 {
		t.Fatalf("refusal %+v", e)
	}
	// A conflicting create is not counted either.
	dup := quotaRecord(now, 5)
	dup.ID = a.ID
	if err := h.l.CreateWithin(t.Context(), dup, storage.Limits{}); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("duplicate: %v", err)
	}
	h.wantUsage(a, 1, 5, 0, 0)
	// Limits that make no sense are an error, not a refusal.
	if err := h.l.CreateWithin(t.Context(), quotaRecord(now, 5), storage.Limits{Rate: 1}); err == nil || errors.Is(err, storage.ErrQuota) {
		t.Fatalf("rate without a window: %v", err)
	}
}

func quotaTestUsageFollowsRecords(t *testing.T, h *quotaHarness) {
	now := quotaAt(0)
	var recs []*storage.Record
	for i := range 12 {
		var r *storage.Record
		if i%3 == 0 {
			r = quotaRecord(now, 0)
		} else {
			r = quotaRecord(now, int64(100*i))
		}
		if i%2 == 0 {
			h.create(r)
		} else {
			h.within(r, storage.Limits{Pending: 100})
		}
		recs = append(recs, r)
	}
	for i, r := range recs {
		switch i % 4 {
		case 0:
			h.setStatus(r, storage.StatusConfirmed, quotaAt(time.Minute))
		case 1:
			h.setStatus(r, storage.StatusRejected, quotaAt(time.Minute))
		case 2:
			h.setStatus(r, storage.StatusExpired, quotaAt(time.Minute))
		}
	}
	// A record created confirmed counts as one confirmation.
	done := quotaRecord(now, 77)
	done.Status = storage.StatusConfirmed
	done.ConfirmedAt = &now
	h.create(done)
	// What the usage says is what the records say.
	var pending, pendingBytes, uploads, bytes int64
	for _, r := range append(recs, done) {
		cur, err := h.l.Get(t.Context(), r.ID)
		if err != nil {
			t.Fatal(err)
		}
		switch cur.Status {
		case storage.StatusPending:
			pending++
			pendingBytes += storage.Charge(cur)
		case storage.StatusConfirmed:
			uploads++
			bytes += cur.Size
		}
	}
	h.wantUsage(done, pending, pendingBytes, uploads, bytes)
	if pending == 0 || uploads < 2 {
		t.Fatalf("the test made %d pending, %d confirmed", pending, uploads)
	}
}

func quotaTestPersistence(t *testing.T, h *quotaHarness) {
	lim := storage.Limits{Pending: 2, Uploads: 3, UploadsWindow: time.Hour, Rate: 1, RateWindow: time.Minute, Burst: 3}
	now := quotaAt(0)
	a := h.within(quotaRecord(now, 10), lim)
	h.within(quotaRecord(now, 10), lim)
	h.setStatus(a, storage.StatusConfirmed, now.Add(time.Second))
	before := h.usage(a)
	h.reopen()
	after := h.usage(a)
	if after.Pending != 1 || after.Uploads != 1 || len(after.Slots) != 1 || after.Grain != before.Grain ||
		after.Tokens != before.Tokens || !after.TokensAt.Equal(before.TokensAt) {
		t.Fatalf("usage after reopening %+v, before %+v", after, before)
	}
	// One token left of three: the next create takes it, the one after is
	// refused by the rate; uploads (1 confirmed + 2 pending) by then too.
	h.within(quotaRecord(now, 10), lim)
	e := h.refused(quotaRecord(now, 10), lim, storage.LimitPending)
	if e.Used != 2 {
		t.Fatalf("refusal %+v", e)
	}
}

func quotaTestConcurrent(t *testing.T, h *quotaHarness) {
	for _, c := range []struct {
		name  string
		lim   storage.Limits
		limit string
		want  int
	}{
		{"pending", storage.Limits{Pending: 5}, storage.LimitPending, 5},
		{"rate", storage.Limits{Rate: 1, RateWindow: time.Hour, Burst: 7}, storage.LimitRate, 7},
		{"bytes", storage.Limits{PendingBytes: 1000}, storage.LimitPendingBytes, 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			subject := "hammer-" + c.name
			var ok, refused atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, 32)
			for range 32 {
				wg.Go(func() {
					r := as(quotaRecord(quotaAt(0), 100), "r", "x", subject)
					err := h.l.CreateWithin(t.Context(), r, c.lim)
					var qe *storage.QuotaError
					switch {
					case err == nil:
						ok.Add(1)
					case errors.As(err, &qe) && qe.Limit == c.limit:
						refused.Add(1)
					default:
						errs <- err
					}
				})
			}
			// Another subject at the same time is not affected.
			var other int
			for range 3 {
				if err := h.l.CreateWithin(t.Context(), as(quotaRecord(quotaAt(0), 100), "r", "x", subject+"-other"), c.lim); err == nil {
					other++
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if ok.Load() != int64(c.want) || refused.Load() != int64(32-c.want) || other != 3 {
				t.Fatalf("%d created, %d refused, other subject %d of 3; want %d created", ok.Load(), refused.Load(), other, c.want)
			}
			u := h.usage(as(quotaRecord(quotaAt(0), 1), "r", "x", subject))
			if u.Pending != int64(c.want) || u.PendingBytes != int64(100*c.want) {
				t.Fatalf("usage %+v after %d creates", u, c.want)
			}
		})
	}
}
