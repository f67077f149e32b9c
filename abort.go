package caddyupload

import (
	"context"
	"net/http"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// serveAbort handles DELETE /{id}.
func (h *Handler) serveAbort(c *call) error {
	rec, err := h.ownRecord(c)
	if err != nil {
		return err
	}
	return h.abort(c, rec)
}

// abort answers an owner's abort of rec: 204 once it is aborted.
func (h *Handler) abort(c *call, rec *storage.Record) error {
	if _, err := h.abortRecord(c.ctx(), rec, ""); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// abortRecord marks rec aborted first, so that no complete can confirm it
// any more, then removes what storage holds of it. A retry after a storage
// failure removes it again. A record that had already ended otherwise
// (expired, rejected) is left as it is. It returns the record as stored;
// reason says who aborted it when not its owner (the admin API).
func (h *Handler) abortRecord(ctx context.Context, rec *storage.Record, reason string) (*storage.Record, error) {
	// A completion of this upload running in this process finishes first:
	// its assembly would otherwise write the object after it was removed.
	unlock, waited := h.completing.lock(rec.ID)
	defer unlock()
	if waited {
		var err error
		if rec, err = h.ledger.Get(ctx, rec.ID); err != nil {
			return nil, errLedger(err)
		}
	}
	if rec.Status == storage.StatusPending || rec.Status == storage.StatusConfirmed {
		var err error
		if rec, err = h.closeRecord(ctx, rec.ID, storage.StatusAborted, reason, storage.StatusPending, storage.StatusConfirmed); err != nil {
			return nil, err
		}
		h.metrics.uploadAborted()
	}
	if rec.Status == storage.StatusAborted {
		if err := h.removeObject(ctx, rec); err != nil {
			return nil, errStorage(err)
		}
	}
	return rec, nil
}

// removeObject deletes rec's object and aborts its multipart upload.
func (h *Handler) removeObject(ctx context.Context, rec *storage.Record) error {
	if rec.Internal.UploadID != "" {
		if err := h.store.AbortMultipart(ctx, rec.Key, rec.Internal.UploadID); err != nil {
			return err
		}
	}
	return h.store.Delete(ctx, rec.Key)
}

// urlSkew is how long after the last moment a write could start that it
// may still land: SigV4 servers accept a URL up to 15 minutes past its
// expiry (clock skew), and a request or assembly already under way
// finishes after the record was closed.
var urlSkew = 15 * time.Minute

// recheckAfterURLs is called as cur is closed (aborted, rejected or
// expired): an upload URL still valid, a PUT still sending, or an assembly
// of its parts still running (in another instance) can write the object
// after it was removed, so the sweeper removes it once more when none can.
func (h *Handler) recheckAfterURLs(cur *storage.Record, now time.Time) {
	last := now
	if cur.Internal.Kind != storage.KindMultipart {
		// Part URLs die with their multipart upload; a single URL lives on.
		last = maxTime(last, cur.CreatedAt.Add(time.Duration(h.URLTTL)))
	}
	cur.Internal.Recheck = true
	cur.Internal.ExpiresAt = last.Add(urlSkew)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
