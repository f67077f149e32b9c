package oidcauth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// benchProvider serves discovery and a JWKS for a local RSA key.
func benchProvider(b *testing.B) (issuer string, key *rsa.PrivateKey) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	b.Cleanup(srv.Close)
	issuer = srv.URL
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"issuer":"` + issuer + `","jwks_uri":"` + issuer + `/keys"}`))
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, _ *http.Request) {
		set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}}
		b, _ := set.Keys[0].MarshalJSON()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"keys":[` + string(b) + `]}`))
	})
	return issuer, key
}

func BenchmarkVerify(b *testing.B) {
	issuer, key := benchProvider(b)
	raw := sign(b, key, jose.RS256, "k1", map[string]any{
		"iss": issuer, "sub": "user-1", "aud": "app", "email": "u@example.com",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
	})
	for _, bc := range []struct {
		name  string
		cache int
	}{{"cache", 0}, {"nocache", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			v, err := New(b.Context(), Config{Issuer: issuer, Audiences: []string{"app"}, CacheSize: bc.cache}, nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			for !v.Ready() {
				time.Sleep(time.Millisecond)
			}
			if _, err := v.Verify(ctx, raw); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if _, err := v.Verify(ctx, raw); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "verifications/s")
		})
	}
}
