package caddyupload

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyupload/caddyupload/storage"
)

const (
	webhookTick  = time.Second
	webhookBatch = 100
	// maxLastError bounds the error text kept with an event.
	maxLastError = 200
)

// dispatcher delivers the outbox events of one route.
type dispatcher struct {
	hook   *Webhook
	outbox storage.Outbox
	route  string
	key    string
	lease  *routeLease
	wakeup chan struct{}
	logger *zap.Logger
}

// Every config that has a webhook for a route starts a dispatcher, and
// during a reload the old config's runs beside the new one's on the same
// ledger. A lease per ledger and route lets only the newest deliver, and its
// round lock keeps two rounds from ever reading the same due events, so an
// event reaches the application twice only when recording its success
// fails.
var leases = struct {
	sync.Mutex
	m map[string]*routeLease
}{m: make(map[string]*routeLease)}

type routeLease struct {
	// round is held by a dispatcher from reading due events until their
	// outcomes are in the ledger.
	round sync.Mutex
	// holder and users are guarded by leases.Mutex.
	holder *dispatcher
	users  int
}

func newDispatcher(hook *Webhook, outbox storage.Outbox, ledger, route string, logger *zap.Logger) *dispatcher {
	d := &dispatcher{hook: hook, outbox: outbox, route: route, key: ledger + "\x00" + route, wakeup: make(chan struct{}, 1), logger: logger}
	leases.Lock()
	defer leases.Unlock()
	l := leases.m[d.key]
	if l == nil {
		l = new(routeLease)
		leases.m[d.key] = l
	}
	// The newest config takes over at once.
	l.holder = d
	l.users++
	d.lease = l
	return d
}

// holds reports whether d may deliver; it takes over a lease whose holder
// has stopped (a newer config that failed to load).
func (l *routeLease) holds(d *dispatcher) bool {
	leases.Lock()
	defer leases.Unlock()
	if l.holder == nil {
		l.holder = d
	}
	return l.holder == d
}

// wake pokes the dispatcher that holds the lease.
func (l *routeLease) wake() {
	leases.Lock()
	d := l.holder
	leases.Unlock()
	if d != nil {
		select {
		case d.wakeup <- struct{}{}:
		default:
		}
	}
}

func (d *dispatcher) release() {
	leases.Lock()
	defer leases.Unlock()
	if d.lease.holder == d {
		d.lease.holder = nil
	}
	if d.lease.users--; d.lease.users == 0 {
		delete(leases.m, d.key)
	}
}

// run delivers due events on every tick and wake-up until the config stops.
func (d *dispatcher) run(ctx caddy.Context) {
	defer d.release()
	defer d.hook.client.CloseIdleConnections()
	defer func() {
		if p := recover(); p != nil {
			d.logger.Error("webhook dispatcher panicked; it stops until the next config load", zap.String("route", d.route), zap.Any("panic", p))
		}
	}()
	ticker := time.NewTicker(webhookTick)
	defer ticker.Stop()
	for {
		for d.round(ctx) {
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-d.wakeup:
		}
	}
}

// round delivers the events due now, one at a time, and reports whether
// it handled a full batch so that more may be waiting.
func (d *dispatcher) round(ctx context.Context) bool {
	d.lease.round.Lock()
	defer d.lease.round.Unlock()
	if ctx.Err() != nil || !d.lease.holds(d) {
		return false
	}
	evs, err := d.outbox.DueEvents(ctx, d.route, time.Now(), webhookBatch)
	if err != nil {
		d.logLedgerError(ctx, "listing due webhook events failed; will retry", "", err)
		return false
	}
	for _, ev := range evs {
		if ctx.Err() != nil || !d.lease.holds(d) || !d.deliver(ctx, ev) {
			return false
		}
	}
	return len(evs) == webhookBatch
}

// deliver makes one attempt and records its outcome; it reports whether
// the outcome is recorded.
func (d *dispatcher) deliver(ctx context.Context, ev *storage.Event) bool {
	postErr := d.hook.post(ctx, ev)
	// The outcome is recorded even while the config stops.
	wctx := context.WithoutCancel(ctx)
	if postErr == nil {
		if err := d.outbox.AckEvent(wctx, ev.ID); err != nil {
			d.logLedgerError(ctx, "recording a webhook delivery failed; the event will be sent again", ev.ID, err)
			return false
		}
		if ce := d.logger.Check(zapcore.DebugLevel, "webhook event delivered"); ce != nil {
			ce.Write(zap.String("route", d.route), zap.String("event_id", ev.ID), zap.String("type", ev.Type), zap.Int("attempt", ev.Attempts+1))
		}
		return true
	}
	attempts := ev.Attempts + 1
	park := attempts >= d.hook.MaxAttempts
	lastErr := postErr.Error()
	if len(lastErr) > maxLastError {
		lastErr = lastErr[:maxLastError]
	}
	next := time.Now().Add(webhookBackoff(attempts, time.Duration(d.hook.MaxBackoff)))
	err := d.outbox.RetryEvent(wctx, ev.ID, next, lastErr, park)
	if errors.Is(err, storage.ErrNotFound) {
		return true // acknowledged meanwhile
	}
	if err != nil {
		d.logLedgerError(ctx, "recording a webhook failure failed", ev.ID, err)
		return false
	}
	fields := []zap.Field{zap.String("route", d.route), zap.String("event_id", ev.ID), zap.String("type", ev.Type), zap.Int("attempts", attempts), zap.String("error", lastErr)}
	if park {
		d.logger.Warn("webhook event parked after its last attempt; replay it through the admin API", fields...)
	} else if ce := d.logger.Check(zapcore.DebugLevel, "webhook attempt failed; will retry"); ce != nil {
		ce.Write(append(fields, zap.Time("next_attempt", next))...)
	}
	return true
}

// logLedgerError warns of a ledger failure, unless the config is stopping
// (the ledger may close under it then; the event stays in the outbox).
func (d *dispatcher) logLedgerError(ctx context.Context, msg, eventID string, err error) {
	level := zapcore.WarnLevel
	if ctx.Err() != nil {
		level = zapcore.DebugLevel
	}
	if ce := d.logger.Check(level, msg); ce != nil {
		fields := []zap.Field{zap.String("route", d.route), zap.Error(err)}
		if eventID != "" {
			fields = append(fields, zap.String("event_id", eventID))
		}
		ce.Write(fields...)
	}
}

// webhookBackoff is the wait after the n-th failed attempt: full jitter
// over 1s doubling with each attempt, capped at limit, so that many events
// failing together do not come back together.
func webhookBackoff(n int, limit time.Duration) time.Duration {
	ceiling := limit
	if n-1 < 32 {
		if d := time.Second << (n - 1); d < limit {
			ceiling = d
		}
	}
	return rand.N(ceiling)
}

// wakeDispatchers pokes every dispatcher that holds a lease, e.g. after an
// operator replayed an event.
func wakeDispatchers() {
	leases.Lock()
	held := make([]*routeLease, 0, len(leases.m))
	for _, l := range leases.m {
		held = append(held, l)
	}
	leases.Unlock()
	for _, l := range held {
		l.wake()
	}
}
