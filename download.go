package caddyupload

import (
	"mime"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// serveDownload handles GET /{id}/download: a redirect to a short-lived
// presigned GET that names the original file safely.
func (h *Handler) serveDownload(c *call) error {
	var rec *storage.Record
	var err error
	if h.Download == "owner" {
		rec, err = h.ownRecord(c)
	} else {
		rec, err = h.anyRecord(c)
	}
	if err != nil {
		return err
	}
	if rec.Status != storage.StatusConfirmed {
		if rec.Status == storage.StatusPending {
			return errNotUploaded("the upload is not confirmed yet")
		}
		return pendingState(rec, time.Now())
	}
	sr, err := h.store.PresignGet(c.ctx(), storage.GetInput{
		Key:                rec.Key,
		ContentType:        rec.Type,
		ContentDisposition: mime.FormatMediaType("attachment", map[string]string{"filename": rec.Filename}),
		TTL:                time.Duration(h.DownloadTTL),
	}, h.origin(c.r))
	if err != nil {
		return errStorage(err)
	}
	c.w.Header().Set("Cache-Control", "no-store")
	// The Location is a bearer credential: kept out of the access log.
	redirectPresigned(c.w, c.r, sr.URL)
	return nil
}
