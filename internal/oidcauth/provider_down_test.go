package oidcauth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap/zaptest"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

func TestProviderDownAtStart(t *testing.T) {
	realservers.RealOnly(t, "Dex")
	t.Parallel()
	port := realservers.FreePort(t)
	issuer := fmt.Sprintf("http://%s/dex", realservers.Addr(port))
	v, err := New(t.Context(), Config{Issuer: issuer, Audiences: []string{"caddyupload"}}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Any well-formed token: the provider cannot judge it yet.
	wellFormed := sign(t, []byte("0123456789abcdef0123456789abcdef"), jose.HS256, "", map[string]any{"sub": "x"})
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	early := sign(t, key, jose.RS256, "k1", map[string]any{"iss": issuer, "sub": "x", "aud": "caddyupload"})
	if _, err := v.Verify(ctx, early); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("provider down: err = %v, want ErrUnavailable", err)
	}
	if v.Ready() {
		t.Fatal("ready without a provider")
	}
	// Malformed input and disallowed algorithms are refused even while
	// the provider is down.
	_, err = v.Verify(ctx, wellFormed)
	mustInvalid(t, err, "algorithm HS256 not allowed")

	d := realservers.StartDex(t, realservers.DexOptions{Port: port})
	raw := d.Token(t, aliceEmail, alicePassword)
	deadline := time.Now().Add(90 * time.Second)
	for {
		id, err := v.Verify(ctx, raw)
		if err == nil {
			if id.Claims["email"] != aliceEmail {
				t.Errorf("email = %v", id.Claims["email"])
			}
			break
		}
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("while the provider comes up: err = %v, want ErrUnavailable until success", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("provider never discovered: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestNewStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	issuer := fmt.Sprintf("http://%s/dex", realservers.Addr(realservers.FreePort(t)))
	v, err := New(ctx, Config{Issuer: issuer, Audiences: []string{"a"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	waitDone(t, v.src)
	if _, err := v.Verify(context.Background(), "x.y.z"); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("err = %v", err)
	}
}

func TestAcquireShares(t *testing.T) {
	issuer := fmt.Sprintf("http://%s/dex", realservers.Addr(realservers.FreePort(t)))
	cfg := Config{Issuer: issuer, Audiences: []string{"a"}}
	v1, release1, err := Acquire(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Audiences = []string{"b"}
	cfg.Leeway = time.Second
	v2, release2, err := Acquire(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if v1.src != v2.src {
		t.Fatal("same provider, different sources")
	}
	if v1.cfg.Audiences[0] == v2.cfg.Audiences[0] {
		t.Fatal("policies were merged")
	}
	cfg.DiscoveryURL = issuer + "/elsewhere"
	v3, release3, err := Acquire(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v3.src == v1.src {
		t.Fatal("different discovery URLs share a source")
	}
	release3()

	release1()
	release1() // idempotent: must not drop v2's reference
	select {
	case <-v2.src.done:
		t.Fatal("source stopped while still in use")
	default:
	}
	// A reload: the new generation acquires before the old releases.
	cfg.DiscoveryURL = ""
	v4, release4, err := Acquire(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v4.src != v2.src {
		t.Fatal("reloaded config got a new source")
	}
	release2()
	release4()
	waitDone(t, v2.src)
	shared.Lock()
	n := len(shared.m)
	shared.Unlock()
	if n != 0 {
		t.Errorf("%d sources left after every release", n)
	}
}

func TestAcquireRejectsBadConfig(t *testing.T) {
	if _, _, err := Acquire(Config{Issuer: "http://127.0.0.1:1/dex"}, nil); err == nil {
		t.Fatal("no audience accepted")
	}
}

func waitDone(t *testing.T, s *source) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		t.Fatal("discovery loop did not stop")
	}
}
