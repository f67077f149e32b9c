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

// abort marks rec aborted first, so that no complete can confirm it any
// more, then removes what storage holds of it. A retry after a storage
// failure removes it again.
func (h *Handler) abort(c *call, rec *storage.Record) error {
	var err error
	switch rec.Status {
	case storage.StatusPending, storage.StatusConfirmed:
		rec, err = h.ledger.Update(c.ctx(), rec.ID, func(cur *storage.Record) error {
			if cur.Status == storage.StatusPending || cur.Status == storage.StatusConfirmed {
				cur.Status = storage.StatusAborted
				cur.Internal.UpdatedAt = time.Now().UTC()
			}
			return nil
		})
		if err != nil {
			return errLedger(err)
		}
		h.notifyWebhook()
	}
	if rec.Status == storage.StatusAborted {
		if err := h.removeObject(c.ctx(), rec); err != nil {
			return errStorage(err)
		}
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
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
