package oidcauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
)

// Identity is an authenticated caller. Claims and Identity values may be
// shared between callers through the cache: treat them as read-only.
type Identity struct {
	Subject string
	Claims  map[string]any
	Expiry  time.Time
}

// Stats counts Verify outcomes since the Verifier was made.
type Stats struct {
	// Verifications is the number of full verifications (signature and
	// claims), successful or not.
	Verifications uint64
	// CacheHits is the number of Verify calls answered from the cache.
	CacheHits uint64
	// CacheEntries is the number of tokens currently cached.
	CacheEntries int
}

// Verifier checks tokens of one provider against one policy. It is safe
// for concurrent use.
type Verifier struct {
	cfg    Config
	algs   []jose.SignatureAlgorithm
	src    *source
	oidc   *oidc.IDTokenVerifier
	cache  *tokenCache // nil when disabled
	logger *zap.Logger

	verifications atomic.Uint64
	cacheHits     atomic.Uint64
}

// New validates cfg and returns at once; discovery runs in the background
// until it succeeds or ctx is cancelled. Until then Verify returns errors
// wrapping ErrUnavailable.
func New(ctx context.Context, cfg Config, logger *zap.Logger) (*Verifier, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	return newVerifier(cfg, newSource(ctx, cfg.Issuer, cfg.DiscoveryURL, cfg.HTTPClient, logger), logger), nil
}

func newVerifier(cfg Config, src *source, logger *zap.Logger) *Verifier {
	v := &Verifier{cfg: cfg, src: src, logger: logger}
	for _, a := range cfg.Algorithms {
		v.algs = append(v.algs, jose.SignatureAlgorithm(a))
	}
	// go-oidc parses the JWS with the allowed algorithms, insists on a
	// single signature and checks the issuer. Audience (several allowed)
	// and expiry (with leeway) are checked here.
	v.oidc = oidc.NewVerifier(cfg.Issuer, probeKeySet{}, &oidc.Config{
		SupportedSigningAlgs: cfg.Algorithms,
		SkipClientIDCheck:    true,
		SkipExpiryCheck:      true,
	})
	if cfg.CacheSize > 0 {
		v.cache = newTokenCache(cfg.CacheSize)
	}
	return v
}

// Ready reports whether discovery has succeeded.
func (v *Verifier) Ready() bool { return v.src.keys.Load() != nil }

// Stats returns the counters.
func (v *Verifier) Stats() Stats {
	s := Stats{Verifications: v.verifications.Load(), CacheHits: v.cacheHits.Load()}
	if v.cache != nil {
		s.CacheEntries = v.cache.len()
	}
	return s
}

// Verify authenticates rawToken. Errors wrap ErrInvalidToken or
// ErrUnavailable with a reason safe to log.
func (v *Verifier) Verify(ctx context.Context, rawToken string) (*Identity, error) {
	if rawToken == "" {
		return nil, invalidf("empty token")
	}
	if len(rawToken) > maxTokenBytes {
		return nil, invalidf("token over %d bytes", maxTokenBytes)
	}
	var key [32]byte
	if v.cache != nil {
		key = cacheKey(rawToken)
		if id, ok := v.cache.get(key, time.Now()); ok {
			v.cacheHits.Add(1)
			return id, nil
		}
	}
	// A token that is not a compact JWS with an allowed algorithm is
	// refused without the provider, so it is never mistaken for an outage.
	jws, err := jose.ParseSignedCompact(rawToken, v.algs)
	if err != nil {
		return nil, invalidf("%s", headerReason(rawToken, v.cfg.Algorithms))
	}
	ks, err := v.src.keySet(ctx)
	if err != nil {
		return nil, err
	}
	v.verifications.Add(1)
	id, err := v.verify(ctx, ks, jws, rawToken)
	if err != nil {
		return nil, err
	}
	if v.cache != nil {
		v.cache.put(key, id, time.Now())
	}
	return id, nil
}

func (v *Verifier) verify(ctx context.Context, ks *keySet, jws *jose.JSONWebSignature, raw string) (*Identity, error) {
	p := &probe{ks: ks, jws: jws}
	tok, err := v.oidc.Verify(context.WithValue(ctx, probeKey{}, p), raw)
	if err != nil {
		// go-oidc flattens errors into strings; the probe says what
		// actually failed.
		switch {
		case p.keyErr != nil && p.keyErr.unavailable != nil:
			return nil, wrapUnavailable(p.keyErr)
		case p.keyErr != nil:
			return nil, invalidf("%s", p.keyErr.reason)
		case p.payload == nil:
			return nil, invalidf("%s", headerReason(raw, v.cfg.Algorithms))
		default:
			return nil, invalidf("%s", claimsReason(p.payload, v.cfg.Issuer))
		}
	}
	var claims map[string]any
	if err := json.Unmarshal(p.payload, &claims); err != nil {
		return nil, invalidf("malformed claims")
	}
	if !slices.ContainsFunc(tok.Audience, func(a string) bool { return slices.Contains(v.cfg.Audiences, a) }) {
		return nil, invalidf("audience not accepted")
	}
	now := time.Now()
	if tok.Expiry.IsZero() {
		return nil, invalidf("no exp claim")
	}
	if now.After(tok.Expiry.Add(v.cfg.Leeway)) {
		return nil, invalidf("expired")
	}
	if nbf, ok := claims["nbf"].(float64); ok && now.Add(v.cfg.Leeway).Before(time.Unix(int64(nbf), 0)) {
		return nil, invalidf("not yet valid (nbf)")
	}
	sub, _ := Lookup(claims, v.cfg.SubjectClaim)
	subject, _ := sub.(string)
	if subject == "" {
		return nil, invalidf("claim %q is not a non-empty string", v.cfg.SubjectClaim)
	}
	return &Identity{Subject: subject, Claims: claims, Expiry: tok.Expiry}, nil
}

func wrapUnavailable(err error) error {
	return &unavailableError{err}
}

type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return ErrUnavailable.Error() + ": " + e.err.Error() }
func (e *unavailableError) Unwrap() error { return ErrUnavailable }

// headerReason explains a token go-oidc refused before checking its
// signature: malformed, or an algorithm outside the allowed set.
func headerReason(raw string, allowed []string) string {
	head, _, ok := strings.Cut(raw, ".")
	if !ok {
		return "malformed token"
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return "malformed token"
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(b, &h) != nil {
		return "malformed token"
	}
	if !slices.Contains(allowed, h.Alg) {
		if len(h.Alg) > 16 {
			h.Alg = h.Alg[:16]
		}
		return "algorithm " + strings.ToValidUTF8(h.Alg, "?") + " not allowed"
	}
	return "malformed token"
}

// claimsReason explains a token go-oidc refused after its signature
// verified: the issuer differs, or the claims do not parse.
func claimsReason(payload []byte, issuer string) string {
	var c struct {
		Iss any `json:"iss"`
	}
	if json.Unmarshal(payload, &c) == nil && c.Iss != issuer {
		return "wrong issuer"
	}
	return "malformed claims"
}

// probeKey carries a *probe through go-oidc to probeKeySet.
type probeKey struct{}

// probe records what happened inside the signature check for one Verify.
type probe struct {
	ks      *keySet
	jws     *jose.JSONWebSignature // already parsed by Verify
	payload []byte                 // set when the signature verified
	keyErr  *keyError              // set when it did not
}

// probeKeySet adapts keySet to go-oidc's KeySet interface, reading the
// key set from the probe in the context.
type probeKeySet struct{}

func (probeKeySet) VerifySignature(ctx context.Context, _ string) ([]byte, error) {
	p := ctx.Value(probeKey{}).(*probe)
	// go-oidc has already refused JWS with other than one signature.
	payload, err := p.ks.verify(ctx, p.jws)
	if err != nil {
		p.keyErr = err.(*keyError)
		return nil, err
	}
	p.payload = payload
	return payload, nil
}
