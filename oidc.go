package caddyupload

import (
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddyupload/caddyupload/internal/oidcauth"
)

// OIDC configures token verification for a route. Routes with the same
// issuer share discovery and the provider's keys.
type OIDC struct {
	// Issuer is the provider's issuer URL; discovery is at
	// {issuer}/.well-known/openid-configuration. Required.
	Issuer string `json:"issuer"`
	// DiscoveryURL overrides where discovery is fetched from, for
	// providers whose discovery document is not under the issuer.
	DiscoveryURL string `json:"discovery_url,omitempty"`
	// Audiences are the accepted `aud` values; a token must name one.
	// Required.
	Audiences []string `json:"audiences,omitempty"`
	// Algorithms are the accepted signing algorithms. Default: RS256,
	// RS384, RS512, ES256, ES384, ES512, PS256, PS384, PS512, EdDSA.
	// "none" and HMAC algorithms are never accepted.
	Algorithms []string `json:"algorithms,omitempty"`
	// Leeway is the clock skew allowed on expiry and not-before.
	// Default: 30s.
	Leeway caddy.Duration `json:"leeway,omitempty"`
	// SubjectClaim is the claim that identifies the owner of uploads.
	// Default: "sub".
	SubjectClaim string `json:"subject_claim,omitempty"`
	// Cookie is the name of a same-origin cookie that may carry the token
	// (stock Uppy in Companion mode sends only cookies). A token from the
	// cookie changes state only on same-origin requests (see
	// trusted_origins). Default: none.
	Cookie string `json:"cookie,omitempty"`
	// DisableHeader stops reading `Authorization: Bearer`. Default: false.
	DisableHeader bool `json:"disable_header,omitempty"`
	// Require lists claim rules that must all hold: a claim whose value (or
	// one of whose array elements) is one of the listed values.
	Require []ClaimRule `json:"require,omitempty"`
}

// ClaimRule requires a claim to have one of Values.
type ClaimRule struct {
	Claim  string   `json:"claim"`
	Values []string `json:"values"`
}

func (h *Handler) newAuthenticator(ctx caddy.Context) (authenticator, error) {
	var claimNames []string
	for _, p := range h.keys.parts {
		if strings.HasPrefix(p.name, "claims.") {
			claimNames = append(claimNames, strings.TrimPrefix(p.name, "claims."))
		}
	}
	if h.OIDC == nil {
		return caddyAuth{subject: h.Subject, claimNames: claimNames}, nil
	}
	o := h.OIDC
	repl := caddy.NewReplacer()
	issuer := repl.ReplaceAll(o.Issuer, "")
	if issuer == "" {
		return nil, fmt.Errorf("oidc: issuer is required")
	}
	if len(o.Audiences) == 0 {
		return nil, fmt.Errorf("oidc: at least one audience is required")
	}
	auds := make([]string, len(o.Audiences))
	for i, a := range o.Audiences {
		auds[i] = repl.ReplaceAll(a, "")
	}
	if o.Cookie == "" && o.DisableHeader {
		return nil, fmt.Errorf("oidc: with disable_header, a cookie must be configured")
	}
	reqs := make([]oidcauth.Requirement, 0, len(o.Require))
	for _, r := range o.Require {
		if r.Claim == "" || len(r.Values) == 0 {
			return nil, fmt.Errorf("oidc: require needs a claim and at least one value")
		}
		reqs = append(reqs, oidcauth.Requirement{Claim: r.Claim, Values: r.Values})
	}
	v, free, err := oidcauth.Acquire(oidcauth.Config{
		Issuer:       issuer,
		DiscoveryURL: repl.ReplaceAll(o.DiscoveryURL, ""),
		Audiences:    auds,
		Algorithms:   o.Algorithms,
		Leeway:       time.Duration(o.Leeway),
		SubjectClaim: o.SubjectClaim,
	}, h.logger.Named("oidc"))
	if err != nil {
		return nil, fmt.Errorf("oidc: %v", err)
	}
	return &oidcAuth{verifier: v, free: free, issuerSource: "oidc " + issuer, cookie: o.Cookie, noHeader: o.DisableHeader, require: reqs, logger: h.logger}, nil
}
