package caddyupload

import (
	"context"
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

// sweep expires every due record and returns how many it expired. The
// ledger decides each record's fate before any object is deleted: a
// pending record past its deadline is claimed (marked expired, with
// Recheck so that it stays due), then its object is deleted, then Recheck
// is cleared. A complete that lands first leaves nothing to claim; one that
// lands after finds the record expired. Closed records whose upload URLs
// have just died (Recheck) have their objects deleted once more the same
// way. If the process dies between the steps, the record is still due and
// the next sweep repeats them; every step is idempotent.
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
		claimed, expired, err := h.sweepUpdate(ctx, due, now, h.claim)
		total += expired
		h.metrics.sweptExpired(expired)
		if expired > 0 {
			h.notifyWebhook()
		}
		if err != nil {
			return total, err
		}
		keys := make([]string, 0, len(claimed))
		for _, rec := range claimed {
			if rec.Internal.UploadID != "" {
				if err := h.store.AbortMultipart(ctx, rec.Key, rec.Internal.UploadID); err != nil {
					return total, fmt.Errorf("aborting multipart upload of %s: %w", rec.ID, err)
				}
			}
			keys = append(keys, rec.Key)
		}
		if err := h.store.Delete(ctx, keys...); err != nil {
			return total, fmt.Errorf("deleting %d objects: %w", len(keys), err)
		}
		h.metrics.sweptObjects(len(keys))
		if _, _, err := h.sweepUpdate(ctx, claimed, now, release); err != nil {
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
	case cur.NeedsSweep():
		return true, false
	}
	return false, false
}

// release ends a claim once the object is gone: no URL can write it again.
func release(cur *storage.Record, now time.Time) (bool, bool) {
	if cur.NeedsSweep() && cur.Status != storage.StatusPending && !cur.Internal.ExpiresAt.After(now) {
		cur.Internal.Recheck = false
	}
	return false, false
}

// sweepUpdate applies step to every record with many updates in flight, so
// that the ledger's group commit writes them in a few transactions. It
// returns the records step claimed, as stored, and how many it expired.
func (h *Handler) sweepUpdate(ctx context.Context, recs []*storage.Record, now time.Time, step func(*storage.Record, time.Time) (bool, bool)) ([]*storage.Record, int, error) {
	const workers = 32
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		claimed  []*storage.Record
		expired  int
		firstErr error
	)
	next := make(chan *storage.Record)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rec := range next {
				var took, exp bool
				out, err := h.ledger.Update(ctx, rec.ID, func(cur *storage.Record) error {
					// The function may run again when a batch is retried:
					// its outcome is decided afresh each time.
					took, exp = step(cur, now)
					return nil
				})
				mu.Lock()
				switch {
				case err != nil && firstErr == nil:
					firstErr = fmt.Errorf("sweeping %s: %w", rec.ID, err)
				case err == nil && took:
					claimed = append(claimed, out)
				}
				if err == nil && exp {
					expired++
				}
				mu.Unlock()
			}
		}()
	}
	for _, rec := range recs {
		next <- rec
	}
	close(next)
	wg.Wait()
	return claimed, expired, firstErr
}
