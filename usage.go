package caddyupload

import (
	"context"
	"math"
	"net/http"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// usageResponse is GET /usage: the caller's usage of the route and the
// route's limits. Each entry's used is what counts against its limit;
// limit and remaining are left out where the route sets no limit.
type usageResponse struct {
	Pending      usageEntry `json:"pending"`
	PendingBytes usageEntry `json:"pending_bytes"`
	Uploads      usageEntry `json:"uploads"`
	Bytes        usageEntry `json:"bytes"`
	Rate         *rateEntry `json:"rate,omitempty"`
}

type usageEntry struct {
	// Used: pending uploads or their bytes; for uploads and bytes, those
	// confirmed in the window (or in all) plus the pending ones, each of
	// which may still be confirmed.
	Used      int64  `json:"used"`
	Limit     *int64 `json:"limit,omitempty"`
	Remaining *int64 `json:"remaining,omitempty"`
	// WindowSeconds is the limit's sliding window; absent for "in all".
	WindowSeconds int64 `json:"window_seconds,omitempty"`
}

type rateEntry struct {
	// Remaining is how many creates may come now.
	Remaining     int64 `json:"remaining"`
	Limit         int64 `json:"limit"`
	WindowSeconds int64 `json:"window_seconds"`
	Burst         int64 `json:"burst"`
}

// serveUsage handles GET /usage.
func (h *Handler) serveUsage(c *call) error {
	if h.quotas == nil {
		return errNotFound()
	}
	resp, err := h.usageOf(c.ctx(), storage.QuotaKey{Route: h.Name, Source: c.who.Source, Subject: c.who.Subject})
	if err != nil {
		return errLedger(err)
	}
	writeJSON(c.w, http.StatusOK, resp)
	return nil
}

// usageOf is a subject's usage of this route against its limits: what
// GET /usage answers the caller and the admin API anyone.
func (h *Handler) usageOf(ctx context.Context, key storage.QuotaKey) (usageResponse, error) {
	u, err := h.quotas.Usage(ctx, key)
	if err != nil {
		return usageResponse{}, err
	}
	now := time.Now()
	lim := h.limits
	entry := func(used, limit int64, window time.Duration) usageEntry {
		e := usageEntry{Used: used, WindowSeconds: int64(window / time.Second)}
		if limit > 0 {
			rem := max(limit-used, 0)
			e.Limit, e.Remaining = &limit, &rem
		}
		return e
	}
	uploads, _ := u.InWindow(lim.UploadsWindow, now)
	_, bytes := u.InWindow(lim.BytesWindow, now)
	resp := usageResponse{
		Pending:      entry(u.Pending, lim.Pending, 0),
		PendingBytes: entry(u.PendingBytes, lim.PendingBytes, 0),
		Uploads:      entry(uploads+u.Pending, lim.Uploads, lim.UploadsWindow),
		Bytes:        entry(bytes+u.PendingBytes, lim.Bytes, lim.BytesWindow),
	}
	if lim.Rate > 0 {
		burst := lim.Burst
		if burst <= 0 {
			burst = lim.Rate
		}
		resp.Rate = &rateEntry{
			Remaining:     int64(math.Floor(u.TokensLeft(lim, now))),
			Limit:         lim.Rate,
			WindowSeconds: int64(lim.RateWindow / time.Second),
			Burst:         burst,
		}
	}
	return resp, nil
}
