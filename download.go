package caddyupload

import (
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/caddyupload/caddyupload/storage"
)

// serveDownload handles GET /{id}/download: a redirect to where the route
// serves downloads (DownloadVia): by default a short-lived presigned GET
// that names the original file safely.
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
	if err := h.stillConfirmed(c, rec); err != nil {
		return err
	}
	loc, secret, err := h.downloadLocation(c, rec)
	if err != nil {
		return err
	}
	c.w.Header().Set("Cache-Control", "no-store")
	if !secret {
		http.Redirect(c.w, c.r, loc, http.StatusFound)
		return nil
	}
	// The Location is a bearer credential: kept out of the access log.
	redirectPresigned(c.w, c.r, loc)
	return nil
}

// stillConfirmed checks that storage holds the object rec was confirmed
// with: a POST form stays valid until it expires and S3 cannot make it
// create-only, so a replacement is possible there; it is never served.
func (h *Handler) stillConfirmed(c *call, rec *storage.Record) error {
	if rec.Internal.ETag == "" {
		return nil // confirmed before ETags were recorded
	}
	info, err := h.store.Head(c.ctx(), rec.Key)
	if errors.Is(err, storage.ErrNotFound) {
		return errExpired("the object is no longer in storage")
	}
	if err != nil {
		return errStorage(err)
	}
	if info.ETag != rec.Internal.ETag || info.Size != rec.Size {
		h.logger.Error("a confirmed object was replaced in storage; it is not served and the record is rejected",
			zap.String("route", h.Name), zap.String("id", rec.ID))
		return h.revoke(c.ctx(), rec, "the object was replaced after confirmation")
	}
	return nil
}
