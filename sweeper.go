package caddyupload

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddyupload/caddyupload/storage"
)

const sweepBatch = 1000 // one DeleteObjects call

// runSweeper expires, every SweepInterval, the uploads of this route's
// store still pending past their deadline. It only ever touches keys the
// ledger says this module issued. Several routes on one store sweep the
// same records harmlessly: each step is idempotent.
func (h *Handler) runSweeper(ctx caddy.Context) {
	defer func() {
		if p := recover(); p != nil {
			h.logger.Error("sweeper panicked; it stops until the next config load", zap.Any("panic", p))
		}
	}()
	ticker := time.NewTicker(time.Duration(h.SweepInterval))
	defer ticker.Stop()
	for tick := 1; ; tick++ {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if !h.holdSweepLease(ctx) {
			continue
		}
		n, err := h.sweep(ctx, time.Now())
		if err != nil {
			h.logger.Warn("sweep failed; will retry", zap.String("route", h.Name), zap.Error(err))
		} else if n > 0 {
			h.logger.Info("expired abandoned uploads", zap.String("route", h.Name), zap.Int("count", n))
		}
		if tick%orphanEvery == 0 {
			n, err := h.sweepOrphans(ctx, time.Now())
			if err != nil {
				h.logger.Warn("orphan scan failed; will retry", zap.String("route", h.Name), zap.Error(err))
			} else if n > 0 {
				h.logger.Info("aborted orphaned multipart uploads", zap.String("route", h.Name), zap.Int("count", n))
			}
		}
	}
}

// sweepLeaseIntervals is how many sweep intervals the sweep lease lasts:
// an instance sharing the ledger takes a route's sweeping over at most
// this many intervals (plus one) after its holder's last sweep.
const sweepLeaseIntervals = 3

// holdSweepLease reports whether this process sweeps now. On a ledger
// shared by several instances (storage.Leaser) one of them sweeps a
// route's store at a time: it renews the lease at every sweep, and when it
// dies another one takes over once the lease expires. Two sweeping at once
// (a holder paused past its lease) is harmless, as every step is
// idempotent; the lease only saves the duplicate work and storage calls.
func (h *Handler) holdSweepLease(ctx context.Context) bool {
	l, ok := h.ledger.(storage.Leaser)
	if !ok {
		return true
	}
	name := "sweep:" + h.store.ID() + ":" + h.Name
	held, err := l.TryLease(ctx, name, storage.LeaseHolder(), sweepLeaseIntervals*time.Duration(h.SweepInterval))
	if err != nil {
		if ctx.Err() == nil {
			h.logger.Warn("taking the sweep lease failed; will retry", zap.String("route", h.Name), zap.Error(err))
		}
		return false
	}
	return held
}

// sweep expires every due record and returns how many it expired. The
// ledger decides each record's fate before any object is deleted: a
// pending record past its deadline is claimed (marked expired, with
// Recheck and a deadline after which no late write can land), then its
// object is deleted. A complete that lands first leaves nothing to claim;
// one that lands after finds the record expired. Closed records whose last
// write could have landed by now (Recheck) have their objects deleted once
// more, and are released (Recheck cleared, retention scheduled); records
// past their retention are deleted. If the process dies between the steps,
// the record is still due and the next sweep repeats them; every step is
// idempotent.
func (h *Handler) sweep(ctx context.Context, now time.Time) (int, error) {
	defer h.metrics.sweepRan()
	total := 0
	for {
		due, err := h.ledger.DueSweep(ctx, h.store.ID(), now, sweepBatch)
		if err != nil {
			return total, fmt.Errorf("listing due uploads: %w", err)
		}
		if len(due) == 0 {
			return total, nil
		}
		if f := afterSweepList.Load(); f != nil {
			(*f)(h, due)
		}
		var old, pending, closed []*storage.Record
		for _, rec := range due {
			switch {
			case retiring(rec, now):
				old = append(old, rec)
			case rec.Status == storage.StatusPending:
				pending = append(pending, rec)
			case rec.Internal.Recheck && rec.Status != storage.StatusConfirmed:
				// Closed: its fate is decided, only its object is due.
				closed = append(closed, rec)
			}
		}
		n, err := h.retire(ctx, old, now)
		h.metrics.retiredRecords(n)
		if err != nil {
			return total, err
		}
		claimed, expired, err := h.sweepUpdate(ctx, pending, now, h.claim)
		total += expired
		h.metrics.sweptExpired(expired)
		if expired > 0 {
			h.notifyWebhook()
		}
		if err != nil {
			return total, err
		}
		gone := append(claimed, closed...)
		if err := h.removeObjects(ctx, gone); err != nil {
			return total, err
		}
		// Records whose writes may still land stay due (recheckAfterURLs);
		// the others are released, with no write for those.
		var done []*storage.Record
		for _, rec := range gone {
			if !rec.Internal.ExpiresAt.After(now) {
				done = append(done, rec)
			}
		}
		if _, _, err := h.sweepUpdate(ctx, done, now, h.release); err != nil {
			return total, err
		}
		if len(due) < sweepBatch {
			return total, nil
		}
	}
}

// afterSweepList runs between listing due records and claiming them; tests
// use it to land a write in that window, as a slow commit would.
var afterSweepList atomic.Pointer[func(*Handler, []*storage.Record)]

// claim takes a due record for deletion and reports whether it did so and
// whether that expired it. A record that changed since it was listed (a
// complete landed) is left alone. An expired record stays due for one more
// deletion after a write still under way could have landed.
func (h *Handler) claim(cur *storage.Record, now time.Time) (claimed, expired bool) {
	switch {
	case cur.Internal.ExpiresAt.After(now):
		return false, false
	case cur.Status == storage.StatusPending:
		cur.Status = storage.StatusExpired
		cur.Internal.UpdatedAt = now.UTC()
		h.recheckAfterURLs(cur, now)
		return true, true
	case cur.Internal.Recheck && cur.Status != storage.StatusConfirmed:
		// Never a confirmed record: its object is the application's.
		return true, false
	}
	return false, false
}

// release ends a claim once the object is gone and no write can land any
// more; the record is then kept for the route's retention.
func (h *Handler) release(cur *storage.Record, now time.Time) (bool, bool) {
	if cur.Internal.Recheck && cur.Status != storage.StatusPending && !cur.Internal.ExpiresAt.After(now) {
		cur.Internal.Recheck = false
		h.retain(cur)
	}
	return false, false
}

// retain schedules the deletion of terminal record cur after the route's
// retention for its status; without one the record is kept.
func (h *Handler) retain(cur *storage.Record) {
	d := time.Duration(h.Retention)
	if cur.Status == storage.StatusConfirmed {
		d = time.Duration(h.RetentionConfirmed)
	}
	cur.Internal.Retire = d > 0
	if d > 0 {
		cur.Internal.ExpiresAt = cur.Internal.UpdatedAt.Add(d)
	}
}

// retiring reports whether the sweep deletes rec itself: a terminal record
// past its retention with nothing else due.
func retiring(rec *storage.Record, now time.Time) bool {
	return rec.Internal.Retire && !rec.Internal.Recheck && rec.Terminal() && !rec.Internal.ExpiresAt.After(now)
}

// retire deletes the records past their retention (never an object) and
// returns how many it deleted.
func (h *Handler) retire(ctx context.Context, recs []*storage.Record, now time.Time) (int, error) {
	var n atomic.Int64
	err := forEach(recs, func(rec *storage.Record) error {
		err := h.ledger.Delete(ctx, rec.ID, func(cur *storage.Record) error {
			if !retiring(cur, now) {
				return errNotRetiring
			}
			return nil
		})
		switch {
		case err == nil:
			n.Add(1)
		case errors.Is(err, errNotRetiring) || errors.Is(err, storage.ErrNotFound):
		default:
			return fmt.Errorf("retiring %s: %w", rec.ID, err)
		}
		return nil
	})
	return int(n.Load()), err
}

var errNotRetiring = errors.New("record changed since it was listed")

// sweepUpdate applies step to every record with many updates in flight, so
// that the ledger's group commit writes them in a few transactions. It
// returns the records step claimed, as stored, and how many it expired.
func (h *Handler) sweepUpdate(ctx context.Context, recs []*storage.Record, now time.Time, step func(*storage.Record, time.Time) (bool, bool)) ([]*storage.Record, int, error) {
	var (
		mu      sync.Mutex
		claimed []*storage.Record
		expired int
	)
	err := forEach(recs, func(rec *storage.Record) error {
		var took, exp bool
		out, err := h.ledger.Update(ctx, rec.ID, func(cur *storage.Record) error {
			// The function may run again when a batch is retried: its
			// outcome is decided afresh each time.
			took, exp = step(cur, now)
			return nil
		})
		if err != nil {
			return fmt.Errorf("sweeping %s: %w", rec.ID, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if took {
			claimed = append(claimed, out)
		}
		if exp {
			expired++
		}
		return nil
	})
	return claimed, expired, err
}

// removeObjects deletes the objects of recs (aborting their multipart
// uploads) with one DeleteObjects call per 1,000 keys.
func (h *Handler) removeObjects(ctx context.Context, recs []*storage.Record) error {
	err := forEach(recs, func(rec *storage.Record) error {
		if rec.Internal.UploadID == "" {
			return nil
		}
		if err := h.store.AbortMultipart(ctx, rec.Key, rec.Internal.UploadID); err != nil {
			return fmt.Errorf("aborting multipart upload of %s: %w", rec.ID, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	keys := make([]string, len(recs))
	for i, rec := range recs {
		keys[i] = rec.Key
	}
	if err := h.store.Delete(ctx, keys...); err != nil {
		return fmt.Errorf("deleting %d objects: %w", len(keys), err)
	}
	h.metrics.sweptObjects(len(keys))
	return nil
}

// forEach runs fn on every record with many calls in flight, so that the
// ledger's group commit writes them in a few transactions, and returns the
// first error.
func forEach(recs []*storage.Record, fn func(*storage.Record) error) error {
	const workers = 32
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	next := make(chan *storage.Record)
	for range min(workers, len(recs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rec := range next {
				if err := fn(rec); err != nil {
					once.Do(func() { firstErr = err })
				}
			}
		}()
	}
	for _, rec := range recs {
		next <- rec
	}
	close(next)
	wg.Wait()
	return firstErr
}
