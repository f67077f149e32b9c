package webhook

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyupload/caddyupload/storage"
)

const (
	// tick is how often a dispatcher looks for due events without a
	// wake-up: retries come due without anyone waking it.
	tick  = time.Second
	batch = 100
	// maxLastError bounds the error text kept with an event.
	maxLastError = 200
)

// Options wire a dispatcher to its route's outbox.
type Options struct {
	// Outbox holds the route's events. When it implements
	// storage.Identified, configs that share it share one lease (see
	// Start); otherwise each Outbox value has its own. When it implements
	// storage.Leaser, it is shared by several processes, and one of them
	// at a time delivers the route's events (see SharedLeaseTTL).
	Outbox storage.Outbox
	// Route names the route whose events the dispatcher delivers.
	Route string
	// Logger receives failures (Warn) and each attempt (Debug). Nil: none.
	Logger *zap.Logger
	// Now is the clock: due events, next attempts and signature times are
	// read from it. Nil: time.Now.
	Now func() time.Time
	// OnAttempt, when set, is told each recorded attempt's outcome:
	// "delivered", "failed" (retried later) or "parked" (for metrics).
	OnAttempt func(outcome string)
	// OnDue, when set, is told how many events each listing of due events
	// found waiting, beside those already under way (at most one batch).
	OnDue func(n int)
}

// Dispatcher delivers the outbox events of one route, oldest first, up to
// Config.Concurrency at a time; the events of one upload one after the
// other, in the order they happened.
type Dispatcher struct {
	cfg Config
	// stdKey is the HMAC key of the webhook-signature header.
	stdKey []byte
	outbox storage.Outbox
	route  string
	key    string
	client *http.Client
	logger *zap.Logger
	now    func() time.Time
	// jitter draws the wait before a retry from [0, ceiling).
	jitter func(ceiling time.Duration) time.Duration
	tick   time.Duration

	onAttempt func(string)
	onDue     func(int)

	lease *lease
	// leaser and holder take the route's lease across processes; leaser
	// is nil for an outbox only this process uses.
	leaser storage.Leaser
	holder string
	wakeup chan struct{}
	done   chan struct{}
}

// Every config that has a webhook for a route starts a dispatcher, and
// during a reload the old config's runs beside the new one's on the same
// ledger. A lease per ledger and route lets only the newest deliver, and its
// round lock keeps two rounds from ever reading the same due events, so an
// event reaches the application twice only when recording its success
// fails.
var leases = struct {
	sync.Mutex
	m map[string]*lease
}{m: make(map[string]*lease)}

type lease struct {
	// round is held by a dispatcher from reading due events until their
	// outcomes are in the outbox.
	round sync.Mutex
	// holder and users are guarded by leases.Mutex.
	holder *Dispatcher
	users  int
	// shared is this process's hold of the lease across processes,
	// guarded by round.
	shared sharedLease
}

// sharedLease is what a process knows of its lease on a shared outbox.
// Its times are this process's monotonic clock; until is counted from
// before the request that took the lease, so it ends no later than the
// database's expiry, whatever the clocks say.
type sharedLease struct {
	until   time.Time // zero: not held
	checked time.Time // last asked
}

// Start validates cfg and starts delivering the route's events until ctx
// ends. The new dispatcher takes the route's lease at once: a dispatcher
// started earlier on the same outbox and route stops delivering, and takes
// the lease back only if this one stops first (a newer config that failed
// to load).
func Start(ctx context.Context, cfg Config, o Options) (*Dispatcher, error) {
	d, err := newDispatcher(cfg, o)
	if err != nil {
		return nil, err
	}
	d.start(ctx)
	return d, nil
}

func newDispatcher(cfg Config, o Options) (*Dispatcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.Outbox == nil {
		return nil, errors.New("no outbox")
	}
	key, err := StandardKey(cfg.Secret)
	if err != nil {
		return nil, err
	}
	d := &Dispatcher{
		cfg:    cfg,
		stdKey: key,
		outbox: o.Outbox,
		route:  o.Route,
		key:    identity(o.Outbox) + "\x00" + o.Route,
		client: newClient(cfg.Concurrency),
		logger: o.Logger,
		now:    o.Now,
		jitter: rand.N[time.Duration],
		tick:   tick,
		holder: storage.LeaseHolder(),
		wakeup: make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	if d.logger == nil {
		d.logger = zap.NewNop()
	}
	if d.now == nil {
		d.now = time.Now
	}
	d.leaser, _ = o.Outbox.(storage.Leaser)
	d.onAttempt, d.onDue = o.OnAttempt, o.OnDue
	if d.onAttempt == nil {
		d.onAttempt = func(string) {}
	}
	if d.onDue == nil {
		d.onDue = func(int) {}
	}
	return d, nil
}

// identity names the outbox for the leases: what configs sharing it have
// in common.
func identity(o storage.Outbox) string {
	if id, ok := o.(storage.Identified); ok {
		return id.Identity()
	}
	return fmt.Sprintf("%T@%p", o, o)
}

// start takes the lease and runs the dispatcher; the lease is released
// when ctx ends, so a dispatcher cannot hold one without running.
func (d *Dispatcher) start(ctx context.Context) {
	leases.Lock()
	l := leases.m[d.key]
	if l == nil {
		l = new(lease)
		leases.m[d.key] = l
	}
	// The newest config takes over at once.
	l.holder = d
	l.users++
	d.lease = l
	leases.Unlock()
	go d.run(ctx)
}

// Wake has the route's events looked at now rather than at the next tick,
// e.g. after a status change wrote one. It pokes whichever dispatcher holds
// the route's lease.
func (d *Dispatcher) Wake() { d.lease.wake() }

// Done is closed once the dispatcher has stopped and released its lease.
func (d *Dispatcher) Done() <-chan struct{} { return d.done }

// WakeAll pokes every running dispatcher, e.g. after an operator replayed
// an event, which any of them may be the one to deliver.
func WakeAll() {
	leases.Lock()
	held := make([]*lease, 0, len(leases.m))
	for _, l := range leases.m {
		held = append(held, l)
	}
	leases.Unlock()
	for _, l := range held {
		l.wake()
	}
}

// Serving reports whether a dispatcher for route runs on outbox o, in any
// loaded config. Events of a route without one wait in vain.
func Serving(o storage.Outbox, route string) bool {
	leases.Lock()
	defer leases.Unlock()
	l := leases.m[identity(o)+"\x00"+route]
	return l != nil && l.users > 0
}

// holds reports whether d may deliver; it takes over a lease whose holder
// has stopped.
func (l *lease) holds(d *Dispatcher) bool {
	leases.Lock()
	defer leases.Unlock()
	if l.holder == nil {
		l.holder = d
	}
	return l.holder == d
}

// wake pokes the dispatcher that holds the lease.
func (l *lease) wake() {
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

func (d *Dispatcher) release() {
	leases.Lock()
	defer leases.Unlock()
	if d.lease.holder == d {
		d.lease.holder = nil
	}
	if d.lease.users--; d.lease.users == 0 {
		delete(leases.m, d.key)
		// The last dispatcher of this process for the route stops (Caddy
		// stops, or a config without the webhook replaced this one): hand
		// the shared lease to another instance now rather than at its
		// expiry. Under leases.Mutex, so that a dispatcher started next in
		// this process takes it afresh after the release.
		if d.leaser != nil && !d.lease.shared.until.IsZero() {
			ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
			defer cancel()
			if err := d.leaser.ReleaseLease(ctx, d.sharedLeaseName(), d.holder); err != nil {
				d.logger.Debug("releasing the webhook lease failed; it expires by itself", zap.String("route", d.route), zap.Error(err))
			}
		}
	}
}

// releaseTimeout bounds giving up the shared lease when delivery stops.
const releaseTimeout = 2 * time.Second

// SharedLeaseTTL is how long the lease on a route's events lasts on an
// outbox shared by several processes: an instance takes delivery over at
// most this long (plus a tick) after the holder's last renewal, which it
// makes at most once a tick, before it lists events or starts an attempt.
// It leaves room for attempts started near the end of the lease to finish,
// and their outcomes to be recorded, before another instance can take
// over.
func SharedLeaseTTL(cfg Config) time.Duration { return 2*cfg.Timeout + 5*time.Second }

// attemptRoom is the least lease an attempt starts with: its timeout and
// the recording of its outcome.
func (d *Dispatcher) attemptRoom() time.Duration { return d.cfg.Timeout + 2*time.Second }

func (d *Dispatcher) sharedLeaseName() string { return "webhook:" + d.route }

// holdsShared reports whether this process may deliver the route's events
// now, as far as other processes sharing the outbox go; always, for an
// outbox of its own. The lease is renewed once a tick, and before an
// attempt that would outlast it; a refusal is not asked again before the
// next tick, as no instance gets an unexpired lease. Called with round
// held.
func (d *Dispatcher) holdsShared(ctx context.Context) bool {
	if d.leaser == nil {
		return true
	}
	s := &d.lease.shared
	now := time.Now()
	if now.Sub(s.checked) < d.tick {
		if s.until.IsZero() {
			return false
		}
		if s.until.Sub(now) >= d.attemptRoom() {
			return true
		}
	}
	ttl := SharedLeaseTTL(d.cfg)
	held, err := d.leaser.TryLease(ctx, d.sharedLeaseName(), d.holder, ttl)
	s.checked = now
	s.until = time.Time{}
	if err != nil {
		d.logOutboxError(ctx, "taking the webhook lease failed; will retry", "", err)
		return false
	}
	if held {
		s.until = now.Add(ttl)
	}
	return held
}

// run delivers due events on every tick and wake-up until ctx ends.
func (d *Dispatcher) run(ctx context.Context) {
	defer close(d.done)
	defer d.release()
	defer d.client.CloseIdleConnections()
	defer func() {
		if p := recover(); p != nil {
			d.logger.Error("webhook dispatcher panicked; it stops until the next config load", zap.String("route", d.route), zap.Any("panic", p))
		}
	}()
	ticker := time.NewTicker(d.tick)
	defer ticker.Stop()
	for {
		d.round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-d.wakeup:
		}
	}
}

// deliver makes one attempt and records its outcome; it reports whether
// the outcome is recorded and whether the application accepted the event.
func (d *Dispatcher) deliver(ctx context.Context, ev *storage.Event) (recorded, delivered bool) {
	postErr := post(ctx, d.client, &d.cfg, d.stdKey, ev, d.now())
	// The outcome is recorded even while the config stops.
	wctx := context.WithoutCancel(ctx)
	if postErr == nil {
		if err := d.outbox.AckEvent(wctx, ev.ID); err != nil {
			d.logOutboxError(ctx, "recording a webhook delivery failed; the event will be sent again", ev.ID, err)
			return false, true
		}
		d.onAttempt("delivered")
		if ce := d.logger.Check(zapcore.DebugLevel, "webhook event delivered"); ce != nil {
			ce.Write(zap.String("route", d.route), zap.String("event_id", ev.ID), zap.String("type", ev.Type), zap.Int("attempt", ev.Attempts+1))
		}
		return true, true
	}
	attempts := ev.Attempts + 1
	park := attempts >= d.cfg.MaxAttempts
	lastErr := postErr.Error()
	if len(lastErr) > maxLastError {
		lastErr = strings.ToValidUTF8(lastErr[:maxLastError], "")
	}
	next := d.now().Add(backoff(attempts, d.cfg.MaxBackoff, d.jitter))
	err := d.outbox.RetryEvent(wctx, ev.ID, next, lastErr, park)
	if errors.Is(err, storage.ErrNotFound) {
		return true, false // acknowledged meanwhile
	}
	if err != nil {
		d.logOutboxError(ctx, "recording a webhook failure failed", ev.ID, err)
		return false, false
	}
	if park {
		d.onAttempt("parked")
	} else {
		d.onAttempt("failed")
	}
	fields := []zap.Field{zap.String("route", d.route), zap.String("event_id", ev.ID), zap.String("type", ev.Type), zap.Int("attempts", attempts), zap.String("error", lastErr)}
	if park {
		d.logger.Warn("webhook event parked after its last attempt; replay it through the admin API", fields...)
	} else if ce := d.logger.Check(zapcore.DebugLevel, "webhook attempt failed; will retry"); ce != nil {
		ce.Write(append(fields, zap.Time("next_attempt", next))...)
	}
	return true, false
}

// logOutboxError warns of an outbox failure, unless the config is stopping
// (the ledger may close under it then; the event stays in the outbox).
func (d *Dispatcher) logOutboxError(ctx context.Context, msg, eventID string, err error) {
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
