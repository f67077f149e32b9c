package oidcauth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

func TestVerifyDexToken(t *testing.T) {
	realservers.RealOnly(t, "Dex")
	t.Parallel()
	d := realservers.StartDex(t, realservers.DexOptions{})
	v := newDexVerifier(t, d, nil)
	raw := d.Token(t, aliceEmail, alicePassword)
	_, claims := tokenParts(t, raw)

	id, err := v.Verify(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject == "" || id.Subject != claims["sub"] {
		t.Errorf("Subject = %q, want the sub claim %q", id.Subject, claims["sub"])
	}
	if id.Claims["email"] != aliceEmail {
		t.Errorf("email claim = %v", id.Claims["email"])
	}
	if exp := time.Unix(int64(claims["exp"].(float64)), 0); !id.Expiry.Equal(exp) {
		t.Errorf("Expiry = %v, want %v", id.Expiry, exp)
	}

	if err := CheckRequirements(id.Claims, []Requirement{
		{Claim: "groups", Values: []string{"uploaders"}},
		{Claim: "email_verified", Values: []string{"true"}},
	}); err != nil {
		t.Errorf("requirements Alice meets: %v", err)
	}
	err = CheckRequirements(id.Claims, []Requirement{{Claim: "groups", Values: []string{"admins"}}})
	if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), `"groups"`) {
		t.Errorf("group Alice lacks: err = %v, want ErrForbidden naming groups", err)
	}

	bob, err := v.Verify(context.Background(), d.Token(t, bobEmail, bobPassword))
	if err != nil {
		t.Fatal(err)
	}
	if bob.Subject == id.Subject {
		t.Error("Alice and Bob share a subject")
	}
	if err := CheckRequirements(bob.Claims, []Requirement{{Claim: "groups", Values: []string{"uploaders"}}}); !errors.Is(err, ErrForbidden) {
		t.Errorf("Bob has no groups: err = %v, want ErrForbidden", err)
	}
}

func TestVerifyAudiencesAndSubjectClaim(t *testing.T) {
	realservers.RealOnly(t, "Dex")
	t.Parallel()
	d := realservers.StartDex(t, realservers.DexOptions{})
	raw := d.Token(t, aliceEmail, alicePassword)
	ctx := context.Background()

	v := newDexVerifier(t, d, func(c *Config) { c.Audiences = []string{"other-app", d.ClientID} })
	if _, err := v.Verify(ctx, raw); err != nil {
		t.Errorf("one of several audiences: %v", err)
	}

	v = newDexVerifier(t, d, func(c *Config) { c.Audiences = []string{"other-app"} })
	_, err := v.Verify(ctx, raw)
	mustInvalid(t, err, "audience")

	v = newDexVerifier(t, d, func(c *Config) { c.SubjectClaim = "email" })
	if id, err := v.Verify(ctx, raw); err != nil || id.Subject != aliceEmail {
		t.Errorf("SubjectClaim email: id = %+v, err = %v", id, err)
	}
	for _, claim := range []string{"email_verified", "no_such_claim", "groups"} {
		v = newDexVerifier(t, d, func(c *Config) { c.SubjectClaim = claim })
		_, err = v.Verify(ctx, raw)
		mustInvalid(t, err, claim)
	}
}

func TestVerifyRejectsForgeries(t *testing.T) {
	realservers.RealOnly(t, "Dex")
	t.Parallel()
	d := realservers.StartDex(t, realservers.DexOptions{})
	var jwksFetches atomic.Int64
	v := newDexVerifier(t, d, func(c *Config) { c.HTTPClient = countingClient("/keys", &jwksFetches) })
	raw := d.Token(t, aliceEmail, alicePassword)
	header, claims := tokenParts(t, raw)
	parts := strings.Split(raw, ".")
	ctx := context.Background()
	if _, err := v.Verify(ctx, raw); err != nil {
		t.Fatalf("genuine token: %v", err)
	}

	t.Run("garbage", func(t *testing.T) {
		for _, g := range []string{"", "garbage", "a.b.c", parts[0] + "." + parts[1], strings.Repeat("x", maxTokenBytes+1)} {
			_, err := v.Verify(ctx, g)
			if !errors.Is(err, ErrInvalidToken) {
				t.Errorf("Verify(%.20q) err = %v, want ErrInvalidToken", g, err)
			}
		}
	})

	t.Run("tampered signature", func(t *testing.T) {
		sig := []byte(parts[2])
		// Flip a character in the middle: every bit there is significant.
		if sig[10] == 'A' {
			sig[10] = 'B'
		} else {
			sig[10] = 'A'
		}
		_, err := v.Verify(ctx, parts[0]+"."+parts[1]+"."+string(sig))
		mustInvalid(t, err, "bad signature")
	})

	t.Run("tampered claims", func(t *testing.T) {
		forged := map[string]any{}
		for k, val := range claims {
			forged[k] = val
		}
		forged["email"] = "mallory@example.com"
		payload, err := json.Marshal(forged)
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(ctx, parts[0]+"."+b64(payload)+"."+parts[2])
		mustInvalid(t, err, "bad signature")
	})

	t.Run("alg none", func(t *testing.T) {
		h := b64([]byte(`{"alg":"none","typ":"JWT"}`))
		for _, tok := range []string{h + "." + parts[1] + ".", h + "." + parts[1] + "." + parts[2]} {
			_, err := v.Verify(ctx, tok)
			mustInvalid(t, err, "algorithm none not allowed")
		}
	})

	t.Run("HS256 with the public key as secret", func(t *testing.T) {
		var pub *rsa.PublicKey
		for _, k := range fetchJWKS(t, d) {
			if k.KeyID == header["kid"] {
				pub, _ = k.Key.(*rsa.PublicKey)
			}
		}
		if pub == nil {
			t.Fatalf("no RSA key with kid %v in JWKS", header["kid"])
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		secrets := [][]byte{
			pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
			der,
			x509.MarshalPKCS1PublicKey(pub),
		}
		for _, secret := range secrets {
			_, err := v.Verify(ctx, sign(t, secret, jose.HS256, header["kid"].(string), claims))
			mustInvalid(t, err, "algorithm HS256 not allowed")
		}
	})

	t.Run("unknown key claiming the issuer", func(t *testing.T) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		before := jwksFetches.Load()
		// A fresh kid may trigger one refetch (key rotation); repeats of
		// it must not reach the provider again.
		for range 5 {
			_, err = v.Verify(ctx, sign(t, key, jose.RS256, "forged-kid", claims))
			mustInvalid(t, err, "unknown signing key")
		}
		if n := jwksFetches.Load() - before; n > 1 {
			t.Errorf("forged kids caused %d JWKS fetches, want at most 1", n)
		}
		// The provider's own kid with a foreign key: a bad signature, and
		// no refetch at all.
		before = jwksFetches.Load()
		_, err = v.Verify(ctx, sign(t, key, jose.RS256, header["kid"].(string), claims))
		mustInvalid(t, err, "bad signature")
		_, err = v.Verify(ctx, sign(t, key, jose.RS256, "", claims))
		mustInvalid(t, err, "bad signature")
		if n := jwksFetches.Load() - before; n != 0 {
			t.Errorf("bad signatures with a known kid caused %d JWKS fetches", n)
		}
	})

	t.Run("other issuer", func(t *testing.T) {
		other := realservers.StartDex(t, realservers.DexOptions{})
		_, err := v.Verify(ctx, other.Token(t, aliceEmail, alicePassword))
		// Its kid is unknown to the first provider, so the signature
		// check fails before the issuer is compared.
		mustInvalid(t, err, "signing key")

		// Same key set, different issuer: a Verifier for the second
		// provider configured with the first one's issuer never becomes
		// ready, because the discovery document names another issuer.
		w, err := New(t.Context(), Config{Issuer: d.Issuer, DiscoveryURL: other.Issuer + "/.well-known/openid-configuration", Audiences: []string{d.ClientID}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Poll until an attempt has failed and says why.
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err = w.Verify(ctx, raw)
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("discovery naming another issuer: err = %v, want ErrUnavailable", err)
			}
			if strings.Contains(err.Error(), "names issuer") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("err = %v, want it to explain the issuer mismatch", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func TestVerifyWrongIssuerWithValidSignature(t *testing.T) {
	realservers.RealOnly(t, "Dex")
	t.Parallel()
	// Dex signs with the same key whatever the token claims, so a
	// signature-valid token with the wrong iss can only come from a
	// provider configured under another issuer name: discover Dex through
	// its URL but expect a different issuer on tokens.
	d := realservers.StartDex(t, realservers.DexOptions{})
	v := newDexVerifier(t, d, nil)
	// Rebuild the policy with another issuer over the same ready source.
	cfg := v.cfg
	cfg.Issuer = "https://id.example.com"
	w := newVerifier(cfg, v.src, v.logger)
	_, err := w.Verify(context.Background(), d.Token(t, aliceEmail, alicePassword))
	mustInvalid(t, err, "wrong issuer")
}

func TestVerifyExpiredAndCache(t *testing.T) {
	realservers.RealOnly(t, "Dex")
	t.Parallel()
	d := realservers.StartDex(t, realservers.DexOptions{IDTokenTTL: 2 * time.Second})
	const leeway = 500 * time.Millisecond
	v := newDexVerifier(t, d, func(c *Config) { c.Leeway = leeway })
	raw := d.Token(t, aliceEmail, alicePassword)
	ctx := context.Background()

	first, err := v.Verify(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	second, err := v.Verify(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if s := v.Stats(); s.Verifications != 1 || s.CacheHits != 1 || s.CacheEntries != 1 {
		t.Errorf("after two Verify calls: %+v, want 1 verification and 1 cache hit", s)
	}
	if first != second {
		t.Error("cached Verify returned a different identity")
	}

	// Wait (by the clock, not a duration guess) until the token is past
	// exp + leeway.
	for !time.Now().After(first.Expiry.Add(leeway)) {
		time.Sleep(time.Until(first.Expiry.Add(leeway)) + 10*time.Millisecond)
	}
	_, err = v.Verify(ctx, raw)
	mustInvalid(t, err, "expired")
	if s := v.Stats(); s.Verifications != 2 || s.CacheHits != 1 {
		t.Errorf("expired token answered from the cache: %+v", s)
	}
}

func TestVerifyCacheDisabled(t *testing.T) {
	realservers.RealOnly(t, "Dex")
	t.Parallel()
	d := realservers.StartDex(t, realservers.DexOptions{})
	v := newDexVerifier(t, d, func(c *Config) { c.CacheSize = -1 })
	raw := d.Token(t, aliceEmail, alicePassword)
	for range 3 {
		if _, err := v.Verify(context.Background(), raw); err != nil {
			t.Fatal(err)
		}
	}
	if s := v.Stats(); s.Verifications != 3 || s.CacheHits != 0 || s.CacheEntries != 0 {
		t.Errorf("cache disabled: %+v, want 3 verifications", s)
	}
}

func TestVerifyConcurrent(t *testing.T) {
	realservers.RealOnly(t, "Dex")
	t.Parallel()
	d := realservers.StartDex(t, realservers.DexOptions{})
	v := newDexVerifier(t, d, func(c *Config) { c.CacheSize = 2 })
	tokens := []string{
		d.Token(t, aliceEmail, alicePassword),
		d.Token(t, bobEmail, bobPassword),
		d.Token(t, aliceEmail, alicePassword),
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				if _, err := v.Verify(context.Background(), tokens[(g+i)%len(tokens)]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s := v.Stats(); s.CacheEntries > 2 || s.Verifications+s.CacheHits != 400 {
		t.Errorf("stats %+v: want at most 2 cache entries and 400 calls", s)
	}
}
