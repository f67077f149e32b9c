package caddyupload

import (
	"net/http"
	"net/url"
	"strings"
)

// crossOrigin reports whether r may have been sent by a page of another
// origin (scheme, host and port) than the site's own, and that origin is
// not one the route trusts. Browsers attach ambient credentials (cookies,
// cached basic auth) to such requests, so they must not change state (CSRF).
//
// Browsers mark every request with Sec-Fetch-Site, and cross-origin ones
// that can change state with Origin; a request with neither comes from a
// program, not a page, and carries nothing a page could forge.
func crossOrigin(r *http.Request, own string, trusted []string) bool {
	origin := r.Header.Get("Origin")
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return false
	case "":
		if origin == "" {
			return false
		}
	}
	// same-site, cross-site, or an older browser's Origin: only the
	// site's own origin or a trusted one passes.
	if origin == "" || origin == "null" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.Path != "" {
		return true
	}
	o := strings.ToLower(u.Scheme + "://" + u.Host)
	if o == own {
		return false
	}
	for _, t := range trusted {
		if o == t {
			return false
		}
	}
	return true
}
