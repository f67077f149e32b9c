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

// Sweep pacing. Records are claimed sweepChunk at a time, one ledger
// transaction each (short, as every create waits for the ledger's
// writer), and their objects deleted, up to removeBatch keys a
// DeleteObjects call, while the next ones are claimed. One storage call
// at a time: each swept record costs about what a create costs, so more
// calls in flight sweep faster but take a larger share from the creates
// meanwhile (with versitygw on the same 2 cores, two calls swept 10,000
// uploads at 4,400/s rather than 2,900/s, creates keeping 0.37 of their
// rate rather than 0.55).
const (
	sweepBatch    = 1000 // records listed at a time
	sweepChunk    = 100  // records claimed per ledger transaction
	removeBatch   = 1000 // keys per DeleteObjects call at most (S3's limit)
	removeWorkers = 1    // storage calls in flight
)

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
// idempotent. A chunk's objects are deleted while the next chunk is
// claimed; the sweep returns once they all are.
func (h *Handler) sweep(ctx context.Context, now time.Time) (int, error) {
	defer h.metrics.sweepRan()
	rm := h.newRemover(ctx, now)
	total, err := h.sweepDue(ctx, now, rm)
	if rerr := rm.close(); err == nil {
		err = rerr
	}
	return total, err
}

// sweepDue lists, retires and claims due records a batch at a time and
// hands what is to be deleted to rm.
func (h *Handler) sweepDue(ctx context.Context, now time.Time, rm *remover) (int, error) {
	total := 0
	for {
		if err := rm.failed(); err != nil {
			return total, err
		}
		due, err := h.ledger.DueSweep(ctx, h.store.ID(), now, sweepBatch)
		if err != nil {
			return total, fmt.Errorf("listing due uploads: %w", err)
		}
		if f := afterSweepList.Load(); f != nil {
			(*f)(h, due)
		}
		// Records being deleted stay due until they are released: they
		// are listed again meanwhile and left to the remover.
		fresh := rm.notHeld(due)
		if len(fresh) == 0 {
			if len(due) < sweepBatch {
				return total, nil
			}
			rm.waitIdle() // a whole batch of them: let it finish first
			continue
		}
		var old, pending, closed []*storage.Record
		for _, rec := range fresh {
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
		rm.add(closed)
		// A chunk at a time, each handed to the remover before the next is
		// claimed: the claims keep pace with the deletions rather than
		// hold the ledger's writer in one burst.
		for start := 0; start < len(pending); start += sweepChunk {
			if err := rm.failed(); err != nil {
				return total, err // storage fails: claim no more for now
			}
			claimed, expired, err := h.sweepUpdate(ctx, pending[start:min(start+sweepChunk, len(pending))], now, h.claim)
			total += expired
			h.metrics.sweptExpired(expired)
			if expired > 0 {
				h.notifyWebhook()
			}
			// What was claimed is deleted even when another claim failed.
			rm.add(claimed)
			if err != nil {
				return total, err
			}
		}
		if len(due) < sweepBatch {
			return total, nil
		}
	}
}

// remover deletes the objects of claimed and closed records, up to
// removeBatch keys a call and removeWorkers calls at a time, then releases
// the records whose writes can no longer land. Records wait in a queue of
// at most removeBatch: the sweep claims no faster than storage deletes,
// and a worker takes all that came in while it was busy (one call for
// up to removeBatch keys). It holds each record from add until its call
// is done.
type remover struct {
	h   *Handler
	ctx context.Context
	now time.Time
	wg  sync.WaitGroup

	mu      sync.Mutex
	changed *sync.Cond // the queue or held changed, or closing
	queue   []*storage.Record
	closing bool
	held    map[string]bool
	err     error
}

func (h *Handler) newRemover(ctx context.Context, now time.Time) *remover {
	r := &remover{h: h, ctx: ctx, now: now, held: map[string]bool{}}
	r.changed = sync.NewCond(&r.mu)
	for range removeWorkers {
		r.wg.Go(r.work)
	}
	return r
}

// add queues recs, waiting while the queue is full.
func (r *remover) add(recs []*storage.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range recs {
		for len(r.queue) >= removeBatch {
			r.changed.Wait()
		}
		r.held[rec.ID] = true
		r.queue = append(r.queue, rec)
		r.changed.Broadcast()
	}
}

func (r *remover) work() {
	for {
		r.mu.Lock()
		for len(r.queue) == 0 && !r.closing {
			r.changed.Wait()
		}
		if len(r.queue) == 0 {
			r.mu.Unlock()
			return
		}
		recs := r.queue[:min(removeBatch, len(r.queue))]
		r.queue = append([]*storage.Record(nil), r.queue[len(recs):]...)
		r.changed.Broadcast()
		r.mu.Unlock()

		err := r.h.removeObjects(r.ctx, recs)
		if err == nil {
			// Records whose writes may still land stay due
			// (recheckAfterURLs); the others are released, with no write
			// for those.
			var done []*storage.Record
			for _, rec := range recs {
				if !rec.Internal.ExpiresAt.After(r.now) {
					done = append(done, rec)
				}
			}
			_, _, err = r.h.sweepUpdate(r.ctx, done, r.now, r.h.release)
		}
		r.mu.Lock()
		if err != nil && r.err == nil {
			r.err = err
		}
		for _, rec := range recs {
			delete(r.held, rec.ID)
		}
		r.changed.Broadcast()
		r.mu.Unlock()
	}
}

// notHeld returns the records of recs not being removed.
func (r *remover) notHeld(recs []*storage.Record) []*storage.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := recs[:0:0]
	for _, rec := range recs {
		if !r.held[rec.ID] {
			out = append(out, rec)
		}
	}
	return out
}

// waitIdle returns once nothing is held.
func (r *remover) waitIdle() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.held) > 0 {
		r.changed.Wait()
	}
}

// failed returns the first error of a call.
func (r *remover) failed() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// close lets the workers empty the queue and returns the first error.
func (r *remover) close() error {
	r.mu.Lock()
	r.closing = true
	r.changed.Broadcast()
	r.mu.Unlock()
	r.wg.Wait()
	return r.failed()
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
	err := forEach(recs, 32, func(rec *storage.Record) error {
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

// sweepUpdate applies step to every record, sweepChunk records per ledger
// transaction where the ledger can (storage.BatchUpdater), else with many
// updates in flight for its group commit. It returns the records step
// claimed, as stored, and how many it expired. A record gone meanwhile has
// nothing to claim; another failure is returned once every record was
// tried, with the others' outcomes.
func (h *Handler) sweepUpdate(ctx context.Context, recs []*storage.Record, now time.Time, step func(*storage.Record, time.Time) (bool, bool)) ([]*storage.Record, int, error) {
	bu, ok := h.ledger.(storage.BatchUpdater)
	if !ok {
		return h.sweepUpdateEach(ctx, recs, now, step)
	}
	var (
		claimed  []*storage.Record
		expired  int
		firstErr error
	)
	for start := 0; start < len(recs); start += sweepChunk {
		batch := recs[start:min(start+sweepChunk, len(recs))]
		ids := make([]string, len(batch))
		for i, rec := range batch {
			ids[i] = rec.ID
		}
		took, exp := make([]bool, len(batch)), make([]bool, len(batch))
		out, errs := bu.UpdateEach(ctx, ids, func(i int, cur *storage.Record) error {
			// The function may run again when a batch is retried: its
			// outcome is decided afresh each time.
			took[i], exp[i] = step(cur, now)
			return nil
		})
		for i, err := range errs {
			switch {
			case errors.Is(err, storage.ErrNotFound):
			case err != nil:
				if firstErr == nil {
					firstErr = fmt.Errorf("sweeping %s: %w", ids[i], err)
				}
			default:
				if took[i] {
					claimed = append(claimed, out[i])
				}
				if exp[i] {
					expired++
				}
			}
		}
	}
	return claimed, expired, firstErr
}

// sweepUpdateEach is sweepUpdate with one Update per record.
func (h *Handler) sweepUpdateEach(ctx context.Context, recs []*storage.Record, now time.Time, step func(*storage.Record, time.Time) (bool, bool)) ([]*storage.Record, int, error) {
	var (
		mu      sync.Mutex
		claimed []*storage.Record
		expired int
	)
	err := forEach(recs, 32, func(rec *storage.Record) error {
		var took, exp bool
		out, err := h.ledger.Update(ctx, rec.ID, func(cur *storage.Record) error {
			took, exp = step(cur, now)
			return nil
		})
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
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

// removeObjects deletes the objects of recs with one DeleteObjects call,
// after aborting their multipart uploads (one call each, a few at once).
func (h *Handler) removeObjects(ctx context.Context, recs []*storage.Record) error {
	err := forEach(recs, 8, func(rec *storage.Record) error {
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

// forEach runs fn on every record, up to workers calls at once, and returns
// the first error.
func forEach(recs []*storage.Record, workers int, fn func(*storage.Record) error) error {
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	next := make(chan *storage.Record)
	for range min(workers, len(recs)) {
		wg.Go(func() {
			for rec := range next {
				if err := fn(rec); err != nil {
					once.Do(func() { firstErr = err })
				}
			}
		})
	}
	for _, rec := range recs {
		next <- rec
	}
	close(next)
	wg.Wait()
	return firstErr
}
