// Package oidcauth authenticates callers by OIDC JWTs (ID tokens, or access
// tokens that are JWTs) against a provider found by discovery. Discovery
// runs in the background so a server can start while the provider is down;
// until it succeeds Verify answers ErrUnavailable.
package oidcauth

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

const (
	// DefaultLeeway absorbs clock skew between the provider and this host
	// when checking exp and nbf.
	DefaultLeeway = 30 * time.Second
	// DefaultSubjectClaim names the claim that identifies the caller.
	DefaultSubjectClaim = "sub"
	// DefaultCacheSize bounds the cache of verified tokens.
	DefaultCacheSize = 10000
	// maxTokenBytes refuses oversized input before any parsing.
	maxTokenBytes = 16 << 10
	// httpTimeout bounds each discovery and JWKS request.
	httpTimeout = 10 * time.Second
)

// DefaultAlgorithms are the asymmetric signature algorithms accepted when
// Config.Algorithms is empty.
var DefaultAlgorithms = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// Config describes one provider and what a token must satisfy.
type Config struct {
	// Issuer must equal the tokens' iss claim and the discovery
	// document's issuer.
	Issuer string
	// DiscoveryURL is where the discovery document is fetched, when it is
	// not Issuer + "/.well-known/openid-configuration" (e.g. an internal
	// address). The document's issuer must still equal Issuer.
	DiscoveryURL string
	// Audiences: a token is accepted when its aud contains any of them.
	// At least one is required.
	Audiences []string
	// Algorithms allowed in the token header; empty means
	// DefaultAlgorithms. Only asymmetric algorithms are accepted: "none"
	// and HMAC (HS*) are configuration errors.
	Algorithms []string
	// Leeway applied to exp and nbf. 0 means DefaultLeeway; negative
	// means none.
	Leeway time.Duration
	// SubjectClaim names the claim (dotted path allowed) that becomes
	// Identity.Subject; it must be a non-empty string. Default "sub".
	SubjectClaim string
	// CacheSize bounds the cache of verified tokens: 0 means
	// DefaultCacheSize, negative disables the cache.
	CacheSize int
	// HTTPClient for discovery and JWKS; nil means a client with a 10 s
	// timeout.
	HTTPClient *http.Client
}

var allowedAlgorithms = func() map[string]bool {
	m := map[string]bool{}
	for _, a := range DefaultAlgorithms {
		m[a] = true
	}
	return m
}()

// normalize validates c and fills in the defaults.
func (c Config) normalize() (Config, error) {
	if err := checkURL("issuer", c.Issuer); err != nil {
		return c, err
	}
	if c.DiscoveryURL == "" {
		c.DiscoveryURL = strings.TrimSuffix(c.Issuer, "/") + "/.well-known/openid-configuration"
	} else if err := checkURL("discovery URL", c.DiscoveryURL); err != nil {
		return c, err
	}
	if len(c.Audiences) == 0 {
		// Without an audience any client of the provider could call in.
		return c, fmt.Errorf("oidc: at least one audience is required")
	}
	for _, a := range c.Audiences {
		if a == "" {
			return c, fmt.Errorf("oidc: empty audience")
		}
	}
	c.Audiences = slices.Clone(c.Audiences)
	if len(c.Algorithms) == 0 {
		c.Algorithms = DefaultAlgorithms
	}
	for _, a := range c.Algorithms {
		if !allowedAlgorithms[a] {
			return c, fmt.Errorf("oidc: algorithm %q not allowed (use asymmetric algorithms: %s)", a, strings.Join(DefaultAlgorithms, ", "))
		}
	}
	c.Algorithms = slices.Clone(c.Algorithms)
	switch {
	case c.Leeway == 0:
		c.Leeway = DefaultLeeway
	case c.Leeway < 0:
		c.Leeway = 0
	}
	if c.SubjectClaim == "" {
		c.SubjectClaim = DefaultSubjectClaim
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.HTTPClient == nil {
		c.HTTPClient = defaultHTTPClient
	}
	return c, nil
}

var defaultHTTPClient = &http.Client{Timeout: httpTimeout}

func checkURL(what, s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("oidc: %s %q must be an absolute http(s) URL", what, s)
	}
	return nil
}
