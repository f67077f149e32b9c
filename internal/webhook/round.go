package webhook

import (
	"context"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/caddyupload/caddyupload/storage"
)

// A round delivers the route's due events with up to Config.Concurrency
// attempts under way, and lists the due events again whenever the last
// listing is used up while attempts are still under way, so that a slow
// application does not leave the other slots idle. It ends once nothing is
// under way and nothing more may be due, or once it may start no attempt
// (the lease is lost, the config stops, the outbox fails) and the attempts
// under way are recorded.
//
// One upload's events go out one after the other, in order:
//   - the outbox lists no event while an earlier one of its upload is in
//     the outbox, so an event is listed only once the earlier ones are
//     delivered (or dropped);
//   - an attempt's outcome is in the outbox before the round learns of it,
//     and an event under way is left out of every listing made meanwhile:
//     a listing made before its outcome was recorded shows it as due;
//   - an event waits while another of its upload is under way, or listed
//     before it (should the outbox list several, they are put in the
//     order they happened), and is dropped from its listing when an event
//     of its upload failed after the listing was made (the listing
//     predates the failure).
type round struct {
	d   *Dispatcher
	ctx context.Context
	// limit is how many attempts may be under way.
	limit int
	// outcomes receives the outcome of every attempt started.
	outcomes chan outcome
	// underway holds the ids of the events being attempted, busy the
	// record ids of their uploads.
	underway map[string]bool
	busy     map[string]bool
	// queue holds the events of the last listing not yet attempted, in
	// its order.
	queue []*storage.Event
	// failed holds the uploads with an attempt that failed since the last
	// listing was made: the listing predates the failure, so their events
	// in it are not attempted.
	failed map[string]bool
	// more: events may be due that the last listing did not hold (it was
	// full, an attempt was delivered, or the dispatcher was woken).
	more bool
	// stopped: start no further attempt.
	stopped bool
}

type outcome struct {
	ev                  *storage.Event
	recorded, delivered bool
}

// round delivers the events due now (see the round type), holding the
// round lock throughout.
func (d *Dispatcher) round(ctx context.Context) {
	d.lease.round.Lock()
	defer d.lease.round.Unlock()
	r := &round{
		d:        d,
		ctx:      ctx,
		limit:    d.cfg.Concurrency,
		outcomes: make(chan outcome, d.cfg.Concurrency),
		underway: map[string]bool{},
		busy:     map[string]bool{},
		failed:   map[string]bool{},
		more:     true,
	}
	r.run()
}

func (r *round) run() {
	for {
		if !r.stopped {
			r.start()
		}
		if !r.stopped && r.more && r.drained() && len(r.underway) < r.limit {
			r.list()
			continue
		}
		if len(r.underway) == 0 {
			// Nothing waits in the queue either: start took what it could,
			// and an event waits only for another under way.
			return
		}
		wakeup := r.d.wakeup
		if r.stopped {
			// Left for the next round.
			wakeup = nil
		}
		select {
		case o := <-r.outcomes:
			r.settle(o)
		case <-wakeup:
			r.more = true
		}
	}
}

// mayStart reports whether the dispatcher may start an attempt or read the
// outbox: its config runs and it holds the lease in this process and, for
// a shared outbox, across processes.
func (r *round) mayStart() bool {
	d := r.d
	return r.ctx.Err() == nil && d.lease.holds(d) && d.holdsShared(r.ctx)
}

// list reads the due events into the queue, in place of what is left of
// the previous listing (an event in both is in the new one, whose view of
// the outbox is fresher).
func (r *round) list() {
	r.more = false
	if !r.mayStart() {
		r.stopped = true
		return
	}
	// Failures learnt until now are in the outbox this listing reads.
	clear(r.failed)
	// Enough to fill a batch besides the events under way, which lead the
	// listing when they are due the longest.
	n := batch + len(r.underway)
	evs, err := r.d.outbox.DueEvents(r.ctx, r.d.route, r.d.now(), n)
	if err != nil {
		r.d.logOutboxError(r.ctx, "listing due webhook events failed; will retry", "", err)
		r.stopped = true
		return
	}
	r.queue = r.queue[:0]
	for _, ev := range evs {
		if r.underway[ev.ID] {
			continue
		}
		if len(r.queue) == batch {
			r.more = true
			break
		}
		r.queue = append(r.queue, ev)
	}
	inOrder(r.queue)
	r.more = r.more || len(evs) == n
	if len(r.queue) > 0 && r.drained() {
		// Every event listed waits for an attempt under way (an outbox
		// that lists several events of an upload): listing again before
		// one ends would find the same.
		r.more = false
	}
	r.d.onDue(len(r.queue))
}

// drained reports whether no event of the queue can start before an
// attempt under way ends: the next listing may hold events that can.
func (r *round) drained() bool {
	for _, ev := range r.queue {
		if id := recordID(ev); id == "" || !r.busy[id] {
			return false
		}
	}
	return true
}

// start attempts the events of the queue in order while there is room,
// skipping those that must wait.
func (r *round) start() {
	kept := make([]*storage.Event, 0, len(r.queue))
	for i, ev := range r.queue {
		if len(r.underway) >= r.limit {
			kept = append(kept, r.queue[i:]...)
			break
		}
		id := recordID(ev)
		if id != "" {
			if r.failed[id] {
				continue // an event of its upload failed; a later listing tells
			}
			if r.busy[id] {
				kept = append(kept, ev)
				continue
			}
		}
		if !r.mayStart() {
			r.stopped = true
			kept = append(kept, r.queue[i:]...)
			break
		}
		r.underway[ev.ID] = true
		if id != "" {
			r.busy[id] = true
		}
		go r.attempt(ev)
	}
	r.queue = kept
}

// attempt delivers ev and reports the recorded outcome.
func (r *round) attempt(ev *storage.Event) {
	o := outcome{ev: ev}
	defer func() {
		if p := recover(); p != nil {
			r.d.logger.Error("webhook attempt panicked; delivery pauses until the next tick", zap.String("route", r.d.route), zap.String("event_id", ev.ID), zap.Any("panic", p))
			o = outcome{ev: ev}
		}
		r.outcomes <- o
	}()
	o.recorded, o.delivered = r.d.deliver(r.ctx, ev)
}

// settle takes in the outcome of an attempt.
func (r *round) settle(o outcome) {
	delete(r.underway, o.ev.ID)
	id := recordID(o.ev)
	if id != "" {
		delete(r.busy, id)
	}
	if !o.recorded {
		// The outbox may be failing: wait for the next tick.
		r.stopped = true
	}
	if o.recorded && o.delivered {
		// Its upload's next event may be due now.
		r.more = true
		return
	}
	if id != "" {
		r.failed[id] = true
	}
}

// inOrder puts the events of each upload in q in the order they happened,
// in the places q has for them. The outbox lists at most one event of an
// upload at a time; should it list more, they go out in order.
func inOrder(q []*storage.Event) {
	places := map[string][]int{}
	for i, ev := range q {
		if id := recordID(ev); id != "" {
			places[id] = append(places[id], i)
		}
	}
	for _, at := range places {
		if len(at) < 2 {
			continue
		}
		evs := make([]*storage.Event, len(at))
		for j, i := range at {
			evs[j] = q[i]
		}
		slices.SortStableFunc(evs, func(a, b *storage.Event) int {
			if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
				return c
			}
			return strings.Compare(a.ID, b.ID)
		})
		for j, i := range at {
			q[i] = evs[j]
		}
	}
}

// recordID is the id of the upload ev reports, or "" for an event without
// a record (which fails every attempt).
func recordID(ev *storage.Event) string {
	if ev.Record == nil {
		return ""
	}
	return ev.Record.ID
}
