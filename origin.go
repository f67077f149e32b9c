package caddyupload

import (
	"net/http"

	"github.com/caddyupload/caddyupload/storage"
)

// origin is the scheme and host presigned URLs must use: the request's own
// for stores reached through this site (the embedded server), else the
// store's endpoint (the zero Origin).
func (h *Handler) origin(r *http.Request) storage.Origin {
	if s, ok := h.store.(storage.SiteServed); ok && s.ServedBySite() {
		return storage.OriginFromRequest(r)
	}
	return storage.Origin{}
}
