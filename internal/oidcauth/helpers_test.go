package oidcauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap/zaptest"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

const (
	aliceEmail    = "alice@example.com"
	alicePassword = "alice-password"
	bobEmail      = "bob@example.com"
	bobPassword   = "bob-password"
)

// newDexVerifier returns a Verifier for d that is ready (discovery done).
func newDexVerifier(t *testing.T, d *realservers.Dex, mod func(*Config)) *Verifier {
	t.Helper()
	cfg := Config{Issuer: d.Issuer, Audiences: []string{d.ClientID}}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v, err := New(ctx, cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, v)
	return v
}

// waitReady polls until discovery has succeeded.
func waitReady(t *testing.T, v *Verifier) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !v.Ready() {
		if time.Now().After(deadline) {
			t.Fatalf("provider not discovered: %v", *v.src.lastErr.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mustInvalid asserts err is ErrInvalidToken (and not ErrUnavailable) and
// that its message contains want.
func mustInvalid(t *testing.T, err error, want string) {
	t.Helper()
	if !errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("error = %v, want ErrInvalidToken", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %q, want it to mention %q", err, want)
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// tokenParts decodes a compact JWT's header and claims.
func tokenParts(t *testing.T, raw string) (header, claims map[string]any) {
	t.Helper()
	p := strings.Split(raw, ".")
	if len(p) != 3 {
		t.Fatalf("token has %d parts", len(p))
	}
	for i, out := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(p[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatal(err)
		}
	}
	return header, claims
}

// sign mints a compact JWS of claims with key and alg; kid may be empty.
func sign(t testing.TB, key any, alg jose.SignatureAlgorithm, kid string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// fetchJWKS returns the provider's published keys.
func fetchJWKS(t *testing.T, d *realservers.Dex) []jose.JSONWebKey {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := getJSON(context.Background(), http.DefaultClient, d.Issuer+"/keys", &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) == 0 {
		t.Fatal("provider publishes no keys")
	}
	return set.Keys
}

// countingClient counts requests whose path ends with suffix.
func countingClient(suffix string, n *atomic.Int64) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if strings.HasSuffix(r.URL.Path, suffix) {
			n.Add(1)
		}
		return http.DefaultTransport.RoundTrip(r)
	})}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
