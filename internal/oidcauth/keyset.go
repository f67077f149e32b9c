package oidcauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
)

// minRefreshInterval limits JWKS refetches triggered by tokens whose key
// is unknown, so forged kids cannot turn requests into provider traffic.
const minRefreshInterval = 10 * time.Second

// keySet holds a provider's signing keys. It refetches the JWKS when a
// token names an unknown key (rotation), at most once per
// minRefreshInterval. Unlike go-oidc's RemoteKeySet it never refetches for
// a known key whose signature fails, and it reports fetch failures as
// ErrUnavailable rather than as a bad token.
type keySet struct {
	url    string
	client *http.Client
	logger *zap.Logger

	keys atomic.Pointer[[]jose.JSONWebKey]
	gen  atomic.Uint64 // bumped on every successful fetch

	mu          sync.Mutex // serializes fetches
	lastFetched time.Time  // guarded by mu; time of the last fetch attempt
}

func newKeySet(url string, client *http.Client, logger *zap.Logger) *keySet {
	return &keySet{url: url, client: client, logger: logger}
}

// fetch downloads the JWKS, keeping the usable signature keys.
func (k *keySet) fetch(ctx context.Context) error {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := getJSON(ctx, k.client, k.url, &doc); err != nil {
		return err
	}
	var keys []jose.JSONWebKey
	for _, raw := range doc.Keys {
		var key jose.JSONWebKey
		// Keys of types go-jose does not know are skipped, as the JWK
		// spec asks, rather than failing the whole set.
		if err := key.UnmarshalJSON(raw); err != nil || !key.Valid() || !key.IsPublic() {
			continue
		}
		if key.Use != "" && key.Use != "sig" {
			continue
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return fmt.Errorf("GET %s: no usable signing keys", k.url)
	}
	k.keys.Store(&keys)
	k.gen.Add(1)
	return nil
}

var errRefreshTooSoon = errors.New("refresh too soon")

// refresh refetches unless another fetch completed since gen was read or
// the last attempt was too recent.
func (k *keySet) refresh(ctx context.Context, gen uint64) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.gen.Load() != gen {
		return nil
	}
	if time.Since(k.lastFetched) < minRefreshInterval {
		return errRefreshTooSoon
	}
	k.lastFetched = time.Now()
	err := k.fetch(ctx)
	if err != nil {
		k.logger.Warn("fetching signing keys failed", zap.String("jwks_uri", k.url), zap.Error(err))
	} else {
		k.logger.Info("signing keys refreshed", zap.String("jwks_uri", k.url))
	}
	return err
}

// verify checks jws against the cached keys, refetching once for an
// unknown key. The error is a *keyError.
func (k *keySet) verify(ctx context.Context, jws *jose.JSONWebSignature) ([]byte, error) {
	gen := k.gen.Load()
	payload, known := verifyWith(*k.keys.Load(), jws)
	if payload != nil {
		return payload, nil
	}
	if known {
		return nil, &keyError{reason: "bad signature"}
	}
	switch err := k.refresh(ctx, gen); {
	case errors.Is(err, errRefreshTooSoon):
		return nil, &keyError{reason: "unknown signing key"}
	case err != nil:
		return nil, &keyError{unavailable: err}
	}
	payload, known = verifyWith(*k.keys.Load(), jws)
	switch {
	case payload != nil:
		return payload, nil
	case known:
		return nil, &keyError{reason: "bad signature"}
	default:
		return nil, &keyError{reason: "unknown signing key"}
	}
}

// verifyWith tries the keys matching the token's kid (all keys when it has
// none) and whose declared alg, if any, matches the header. known reports
// whether such a key existed.
func verifyWith(keys []jose.JSONWebKey, jws *jose.JSONWebSignature) (payload []byte, known bool) {
	h := jws.Signatures[0].Header
	for i := range keys {
		key := &keys[i]
		if h.KeyID != "" && key.KeyID != h.KeyID {
			continue
		}
		if key.Algorithm != "" && key.Algorithm != h.Algorithm {
			continue
		}
		known = true
		if p, err := jws.Verify(key); err == nil {
			return p, true
		}
	}
	return nil, known
}

// keyError is the outcome of a failed signature check: either the keys
// could not be fetched (unavailable) or the token is bad (reason).
type keyError struct {
	unavailable error
	reason      string
}

func (e *keyError) Error() string {
	if e.unavailable != nil {
		return "signing keys unavailable: " + e.unavailable.Error()
	}
	return e.reason
}
