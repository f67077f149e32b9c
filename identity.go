package caddyupload

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"golang.org/x/net/publicsuffix"

	"github.com/caddyupload/caddyupload/internal/oidcauth"
)

// identity is the authenticated caller of one request.
type identity struct {
	Subject string
	// Claims are the token's claims (OIDC), or the values of the
	// http.auth.user.* placeholders the key template asks for.
	Claims map[string]any
	// FromCookie marks a token taken from a cookie, which authenticates
	// same-site requests only.
	FromCookie bool
}

// authenticator finds the caller of a request.
type authenticator interface {
	authenticate(r *http.Request) (identity, *apiError)
	release()
}

// caddyAuth takes the subject from Caddy's own authentication, e.g. a
// basic_auth or any other authentication handler placed before upload.
type caddyAuth struct {
	claimNames []string
}

func (a caddyAuth) authenticate(r *http.Request) (identity, *apiError) {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl == nil {
		return identity{}, errUnauthenticated("authentication required", false)
	}
	sub, _ := repl.GetString("http.auth.user.id")
	if sub == "" {
		return identity{}, errUnauthenticated("authentication required", false)
	}
	id := identity{Subject: sub}
	if len(a.claimNames) > 0 {
		id.Claims = make(map[string]any, len(a.claimNames))
		for _, n := range a.claimNames {
			if v, ok := repl.GetString("http.auth.user." + n); ok {
				id.Claims[n] = v
			}
		}
	}
	return id, nil
}

func (caddyAuth) release() {}

// oidcAuth verifies an OIDC JWT from the Authorization header or a cookie.
type oidcAuth struct {
	verifier *oidcauth.Verifier
	free     func()
	cookie   string
	noHeader bool
	require  []oidcauth.Requirement
	logger   *zap.Logger
}

func (a *oidcAuth) release() {
	if a.free != nil {
		a.free()
	}
}

func (a *oidcAuth) authenticate(r *http.Request) (identity, *apiError) {
	raw, fromCookie := a.token(r)
	if raw == "" {
		return identity{}, errUnauthenticated("a bearer token is required", false)
	}
	who, err := a.verifier.Verify(r.Context(), raw)
	switch {
	case errors.Is(err, oidcauth.ErrUnavailable):
		return identity{}, errIdentityUnavailable(err)
	case errors.Is(err, context.Canceled):
		return identity{}, errIdentityUnavailable(err)
	case err != nil:
		if ce := a.logger.Check(zap.DebugLevel, "token refused"); ce != nil {
			ce.Write(zap.Error(err)) // the reason, never the token
		}
		return identity{}, errUnauthenticated("the token is not valid", true)
	}
	if err := oidcauth.CheckRequirements(who.Claims, a.require); err != nil {
		return identity{}, errForbidden("the token does not meet this route's requirements")
	}
	return identity{Subject: who.Subject, Claims: who.Claims, FromCookie: fromCookie}, nil
}

// token returns the bearer token of r and whether it came from the cookie.
func (a *oidcAuth) token(r *http.Request) (string, bool) {
	if !a.noHeader {
		if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			return strings.TrimSpace(h[7:]), false
		}
	}
	if a.cookie != "" {
		if c, err := r.Cookie(a.cookie); err == nil && c.Value != "" {
			return c.Value, true
		}
	}
	return "", false
}

// crossSite reports whether r comes from another site, by the Fetch
// Metadata header or, for browsers without it, the Origin header. Cookies
// are sent on cross-site requests, so a cookie-authenticated request that
// changes state must come from the same site (CSRF).
func crossSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site":
		return true
	case "same-origin", "same-site", "none":
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return true // "null" or garbage: an opaque origin is another site
	}
	return site(u.Hostname()) != site(hostOnly(r.Host))
}

func hostOnly(hostport string) string {
	u := url.URL{Host: hostport}
	return u.Hostname()
}

// site is the registrable domain of host (eTLD+1); hosts without one
// (localhost, IP addresses) are their own site.
func site(host string) string {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if net.ParseIP(host) != nil {
		return host
	}
	if s, err := publicsuffix.EffectiveTLDPlusOne(host); err == nil {
		return s
	}
	return host
}
