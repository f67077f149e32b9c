package caddyupload

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddyupload/caddyupload/storage"
)

// requestOrigin is the scheme and host the browser used for r. Behind a
// proxy that terminates TLS, X-Forwarded-Proto and X-Forwarded-Host tell
// them; they are believed only from the proxies the server trusts (Caddy's
// trusted_proxies), never from an arbitrary client.
func requestOrigin(r *http.Request) storage.Origin {
	o := storage.OriginFromRequest(r)
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
		if p := strings.ToLower(firstValue(r.Header.Get("X-Forwarded-Proto"))); p == "http" || p == "https" {
			o.Scheme = p
		}
		if h := firstValue(r.Header.Get("X-Forwarded-Host")); h != "" {
			// Only a bare host[:port]: the embedded server's handler signs
			// for the same value.
			if u, err := url.Parse("//" + h); err == nil && u.Host == h && u.User == nil {
				o.Host = h
			}
		}
	}
	return o
}

// firstValue is the first of a comma-separated header's values: the one
// the outermost proxy set.
func firstValue(v string) string {
	v, _, _ = strings.Cut(v, ",")
	return strings.TrimSpace(v)
}

// ownOrigin is requestOrigin as an Origin header would spell it.
func ownOrigin(r *http.Request) string {
	o := requestOrigin(r)
	return spellOrigin(o.Scheme, o.Host)
}

// spellOrigin writes an origin as browsers send it: lower case, without
// the scheme's default port.
func spellOrigin(scheme, host string) string {
	host = strings.ToLower(host)
	if scheme == "https" {
		host = strings.TrimSuffix(host, ":443")
	} else {
		host = strings.TrimSuffix(host, ":80")
	}
	return scheme + "://" + host
}

// origin is the scheme and host presigned URLs must use: the request's own
// for stores reached through this site (the embedded server), else the
// store's endpoint (the zero Origin).
func (h *Handler) origin(r *http.Request) storage.Origin {
	if s, ok := h.store.(storage.SiteServed); ok && s.ServedBySite() {
		return requestOrigin(r)
	}
	return storage.Origin{}
}
