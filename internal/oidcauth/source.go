package oidcauth

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Discovery retry schedule: exponential backoff with jitter, so a provider
// that comes back is noticed quickly and one that stays down is not
// hammered.
const (
	initialBackoff = 200 * time.Millisecond
	maxBackoff     = 30 * time.Second
	// A Verify while not ready wakes the retry loop early when the last
	// attempt is older than nudgeAfter, then waits up to nudgeWait for it.
	nudgeAfter = time.Second
	nudgeWait  = 200 * time.Millisecond
)

// source discovers a provider and holds its signing keys. One source may
// serve several Verifiers (see Acquire).
type source struct {
	issuer       string
	discoveryURL string
	client       *http.Client
	logger       *zap.Logger

	keys    atomic.Pointer[keySet] // nil until discovery and the first JWKS fetch succeed
	ready   chan struct{}          // closed when keys is set
	nudge   chan struct{}
	busy    atomic.Bool  // an attempt is in progress
	lastTry atomic.Int64 // unix nanoseconds when the last attempt ended
	lastErr atomic.Pointer[string]
	done    chan struct{} // closed when the retry loop has ended
}

// newSource starts discovery in the background; it stops on success or
// when ctx is cancelled.
func newSource(ctx context.Context, issuer, discoveryURL string, client *http.Client, logger *zap.Logger) *source {
	s := &source{
		issuer:       issuer,
		discoveryURL: discoveryURL,
		client:       client,
		logger:       logger,
		ready:        make(chan struct{}),
		nudge:        make(chan struct{}, 1),
		done:         make(chan struct{}),
	}
	msg := "not yet discovered"
	s.lastErr.Store(&msg)
	go s.run(ctx)
	return s
}

func (s *source) run(ctx context.Context) {
	defer close(s.done)
	backoff := initialBackoff
	for attempt := 1; ; attempt++ {
		s.busy.Store(true)
		err := s.discover(ctx)
		s.lastTry.Store(time.Now().UnixNano())
		s.busy.Store(false)
		if err == nil {
			s.logger.Info("oidc provider ready", zap.String("issuer", s.issuer), zap.Int("attempts", attempt))
			return
		}
		if ctx.Err() != nil {
			return
		}
		msg := err.Error()
		s.lastErr.Store(&msg)
		wait := jitter(backoff)
		s.logger.Warn("oidc discovery failed; retrying",
			zap.String("issuer", s.issuer), zap.Int("attempt", attempt),
			zap.Duration("retry_in", wait), zap.Error(err))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.nudge:
			t.Stop()
		case <-t.C:
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// jitter spreads d over [d/2, d) so many instances do not retry in step.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2)
}

// discover fetches the discovery document and the first JWKS.
func (s *source) discover(ctx context.Context) error {
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := getJSON(ctx, s.client, s.discoveryURL, &doc); err != nil {
		return err
	}
	if doc.Issuer != s.issuer {
		return fmt.Errorf("discovery document at %s names issuer %q, configured %q", s.discoveryURL, doc.Issuer, s.issuer)
	}
	if checkURL("jwks_uri", doc.JWKSURI) != nil {
		return fmt.Errorf("discovery document at %s has no valid jwks_uri", s.discoveryURL)
	}
	ks := newKeySet(doc.JWKSURI, s.client, s.logger)
	ks.lastFetched = time.Now()
	if err := ks.fetch(ctx); err != nil {
		return err
	}
	s.keys.Store(ks)
	close(s.ready)
	return nil
}

// keySet returns the provider's keys, or an error wrapping ErrUnavailable
// while discovery has not succeeded. A call during the first attempt, or
// one that finds the last attempt old, wakes the retry loop and waits
// briefly for it; other calls fail at once.
func (s *source) keySet(ctx context.Context) (*keySet, error) {
	if ks := s.keys.Load(); ks != nil {
		return ks, nil
	}
	last := s.lastTry.Load()
	if last == 0 || (!s.busy.Load() && time.Since(time.Unix(0, last)) > nudgeAfter) {
		select {
		case s.nudge <- struct{}{}:
		default:
		}
		t := time.NewTimer(nudgeWait)
		select {
		case <-s.ready:
		case <-t.C:
		case <-ctx.Done():
		case <-s.done:
		}
		t.Stop()
		if ks := s.keys.Load(); ks != nil {
			return ks, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrUnavailable, *s.lastErr.Load())
}
