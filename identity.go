package caddyupload

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddyupload/caddyupload/internal/oidcauth"
)

// defaultSubject is the placeholder Caddy's authentication handlers
// (basic_auth and friends) set for the authenticated user.
const defaultSubject = "{http.auth.user.id}"

// identity is the authenticated caller of one request.
type identity struct {
	// Subject is the caller as its source names it: what {user} in key
	// templates and X-Upload-Subject show.
	Subject string
	// Source names where Subject comes from ("oidc <issuer>", or the Caddy
	// placeholder that carried it): the same subject from two sources is
	// two callers.
	Source string
	// Claims are the token's claims (OIDC), or the values of the
	// http.auth.user.* placeholders the key template asks for.
	Claims map[string]any
	// Ambient marks a credential the browser sends on its own (a cookie of
	// any kind, cached basic auth): it authenticates same-origin requests
	// only for anything that changes state. Only a bearer token in the
	// Authorization header is not ambient.
	Ambient bool
}

// authenticator finds the caller of a request.
type authenticator interface {
	authenticate(r *http.Request) (identity, *apiError)
	// source is the Source of the identities it finds.
	source() string
	release()
}

// checkSubject refuses subjects that could not travel in a header or a log
// line intact.
func checkSubject(sub string) *apiError {
	for _, r := range sub {
		if unicode.IsControl(r) {
			return errForbidden("the caller's identity contains a control character")
		}
	}
	return nil
}

// caddyAuth takes the subject from Caddy's own authentication, e.g. a
// basic_auth or any other authentication handler placed before upload,
// through a placeholder.
type caddyAuth struct {
	// subject is the placeholder that names the caller.
	subject    string
	claimNames []string
}

func (a caddyAuth) authenticate(r *http.Request) (identity, *apiError) {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl == nil {
		return identity{}, errUnauthenticated("authentication required", false)
	}
	sub := repl.ReplaceKnown(a.subject, "")
	if sub == "" {
		return identity{}, errUnauthenticated("authentication required", false)
	}
	if e := checkSubject(sub); e != nil {
		return identity{}, e
	}
	// Whatever Caddy authenticated, the browser may have sent on its own.
	id := identity{Subject: sub, Source: a.subject, Ambient: true}
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

func (a caddyAuth) source() string { return a.subject }

// oidcAuth verifies an OIDC JWT from the Authorization header or a cookie.
type oidcAuth struct {
	verifier     *oidcauth.Verifier
	free         func()
	issuerSource string
	cookie       string
	noHeader     bool
	require      []oidcauth.Requirement
	logger       *zap.Logger
}

func (a *oidcAuth) source() string { return a.issuerSource }

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
	if e := checkSubject(who.Subject); e != nil {
		return identity{}, e
	}
	return identity{Subject: who.Subject, Source: a.issuerSource, Claims: who.Claims, Ambient: fromCookie}, nil
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
