package oidcauth

import (
	"context"
	"fmt"
	"sync"

	"go.uber.org/zap"
)

// Sources are shared process-wide by issuer, discovery URL and HTTP
// client, so every route and every config generation that names the same
// provider shares one discovery loop and one JWKS cache. Policy
// (audiences, algorithms, leeway, subject claim) and the token cache stay
// per Verifier.
var shared = struct {
	sync.Mutex
	m map[string]*sharedSource
}{m: map[string]*sharedSource{}}

type sharedSource struct {
	src    *source
	refs   int
	cancel context.CancelFunc
}

// Acquire returns a Verifier for cfg on the process-wide source for its
// provider, starting discovery if no other user holds it. release must be
// called when the Verifier is no longer used (it is idempotent); the
// source's background work stops when its last user releases it. A
// configuration reload that acquires before it releases keeps the source,
// its readiness and its keys.
func Acquire(cfg Config, logger *zap.Logger) (*Verifier, func(), error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, nil, err
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	key := fmt.Sprintf("%s\x00%s\x00%p", cfg.Issuer, cfg.DiscoveryURL, cfg.HTTPClient)
	shared.Lock()
	s := shared.m[key]
	if s == nil {
		ctx, cancel := context.WithCancel(context.Background())
		s = &sharedSource{
			src:    newSource(ctx, cfg.Issuer, cfg.DiscoveryURL, cfg.HTTPClient, logger),
			cancel: cancel,
		}
		shared.m[key] = s
	}
	s.refs++
	shared.Unlock()
	release := sync.OnceFunc(func() {
		shared.Lock()
		defer shared.Unlock()
		if s.refs--; s.refs == 0 {
			delete(shared.m, key)
			s.cancel()
		}
	})
	return newVerifier(cfg, s.src, logger), release, nil
}
