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
	if rec.Status == storage.StatusPending || rec.Status == storage.StatusConfirmed {
		var err error
		if rec, err = h.closeRecord(c.ctx(), rec.ID, storage.StatusAborted, "", storage.StatusPending, storage.StatusConfirmed); err != nil {
			return err
		}
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

// urlSkew is how long after its expiry a storage server may still accept
// a presigned URL: SigV4 servers allow 15 minutes of clock skew.
var urlSkew = 15 * time.Minute

// recheckAfterURLs is called as cur is closed (aborted or rejected): while
// its upload URL can still be used, the object can be written again after
// it was removed, so the sweeper removes it once more when no URL can. Part
// URLs die with their multipart upload.
func (h *Handler) recheckAfterURLs(cur *storage.Record, now time.Time) {
	if cur.Internal.Kind == storage.KindMultipart {
		return
	}
	if deadline := cur.CreatedAt.Add(time.Duration(h.URLTTL) + urlSkew); deadline.After(now) {
		cur.Internal.Recheck = true
		cur.Internal.ExpiresAt = deadline
	}
}
