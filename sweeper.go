package caddyupload

import (
	"context"
	"fmt"
	"sync"
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

// sweep expires every due record and returns how many it handled: pending
// records past their deadline, and closed ones whose upload URLs have just
// died (Recheck), whose objects are deleted once more. The object goes
// first and the record after: once a record is past its deadline no
// complete can confirm it, and if the process dies between the two steps
// the next sweep deletes again (a no-op) and marks it.
func (h *Handler) sweep(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for {
		due, err := h.ledger.DueSweep(ctx, h.store.ID(), now, sweepBatch)
		if err != nil {
			return total, fmt.Errorf("listing due uploads: %w", err)
		}
		if len(due) == 0 {
			return total, nil
		}
		keys := make([]string, 0, len(due))
		for _, rec := range due {
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
		n, err := h.markExpired(ctx, due, now)
		total += n
		if err != nil {
			return total, err
		}
		h.notifyWebhook()
		if len(due) < sweepBatch {
			return total, nil
		}
	}
}

// markExpired marks records expired with many updates in flight, so that
// the ledger's group commit writes them in a few transactions.
func (h *Handler) markExpired(ctx context.Context, due []*storage.Record, now time.Time) (int, error) {
	const workers = 32
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		n        int
		firstErr error
	)
	next := make(chan *storage.Record)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rec := range next {
				_, err := h.ledger.Update(ctx, rec.ID, func(cur *storage.Record) error {
					switch {
					case cur.Internal.ExpiresAt.After(now):
					case cur.Status == storage.StatusPending:
						cur.Status = storage.StatusExpired
						cur.Internal.UpdatedAt = now.UTC()
					case cur.NeedsSweep():
						// A closed record's URLs are dead now and its
						// object deleted once more: nothing can appear.
						cur.Internal.Recheck = false
					}
					return nil
				})
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("marking %s expired: %w", rec.ID, err)
				} else if err == nil {
					n++
				}
				mu.Unlock()
			}
		}()
	}
	for _, rec := range due {
		next <- rec
	}
	close(next)
	wg.Wait()
	return n, firstErr
}
