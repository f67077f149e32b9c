package webhook

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// memOutbox is an in-memory storage.Outbox that keeps to the interface's
// contract (ordering, parking, ErrNotFound) and records every call.
type memOutbox struct {
	name string
	now  func() time.Time
	// loose drops the rule that an event waits for the earlier events of
	// its record, so that a batch can hold two events of one record.
	loose bool

	mu     sync.Mutex
	events map[string]*storage.Event
	acks   []string
	// dueCalls counts DueEvents calls.
	dueCalls int
}

func newOutbox(name string, now func() time.Time) *memOutbox {
	return &memOutbox{name: name, now: now, events: map[string]*storage.Event{}}
}

func (o *memOutbox) due() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.dueCalls
}

func (o *memOutbox) Identity() string { return o.name }

var _ storage.Identified = (*memOutbox)(nil)

// add puts the event of record id becoming confirmed, due at t.
func (o *memOutbox) add(route, id string, t time.Time) string {
	return o.addEvent(route, id, storage.StatusConfirmed, t)
}

// addEvent puts the event of record id reaching status, created and due
// at t.
func (o *memOutbox) addEvent(route, id string, status storage.Status, t time.Time) string {
	rec := &storage.Record{
		ID: id, Key: "docs/" + id, Status: status, Filename: id + ".txt", Size: 10, Type: "text/plain",
		CreatedAt: t.Add(-time.Minute), Internal: storage.RecordInternal{Subject: "alice", Route: route, Notify: true},
	}
	typ := storage.EventFor(status)
	ev := &storage.Event{ID: id + ":" + typ, Type: typ, Route: route, CreatedAt: t, Record: rec, NextAttempt: t}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events[ev.ID] = ev
	return ev.ID
}

func clone(ev *storage.Event) *storage.Event {
	c := *ev
	c.Record = ev.Record.Clone()
	return &c
}

// get returns a copy of event id, or nil once it is acknowledged.
func (o *memOutbox) get(id string) *storage.Event {
	o.mu.Lock()
	defer o.mu.Unlock()
	if ev := o.events[id]; ev != nil {
		return clone(ev)
	}
	return nil
}

func (o *memOutbox) DueEvents(_ context.Context, route string, t time.Time, limit int) ([]*storage.Event, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.dueCalls++
	var out []*storage.Event
	for _, ev := range o.events {
		if (route == "" || ev.Route == route) && !ev.Parked && !ev.NextAttempt.After(t) && (o.loose || !o.waits(ev)) {
			out = append(out, clone(ev))
		}
	}
	slices.SortFunc(out, func(a, b *storage.Event) int {
		if c := a.NextAttempt.Compare(b.NextAttempt); c != 0 {
			return c
		}
		return a.CreatedAt.Compare(b.CreatedAt)
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// waits reports whether an earlier event of ev's record is in the outbox.
func (o *memOutbox) waits(ev *storage.Event) bool {
	for _, other := range o.events {
		if other.Record.ID == ev.Record.ID && earlier(other, ev) {
			return true
		}
	}
	return false
}

// earlier is the outbox's order of events: CreatedAt, then id.
func earlier(a, b *storage.Event) bool {
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c < 0
	}
	return a.ID < b.ID
}

func (o *memOutbox) AckEvent(_ context.Context, id string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.events, id)
	o.acks = append(o.acks, id)
	return nil
}

func (o *memOutbox) RetryEvent(_ context.Context, id string, next time.Time, lastErr string, park bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	ev := o.events[id]
	if ev == nil {
		return storage.ErrNotFound
	}
	ev.Attempts++
	ev.LastError = lastErr
	ev.NextAttempt = next
	ev.Parked = park
	return nil
}

func (o *memOutbox) RerouteEvent(_ context.Context, id, route string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	ev := o.events[id]
	if ev == nil {
		return storage.ErrNotFound
	}
	ev.Route, ev.Record.Internal.Route = route, route
	ev.Parked, ev.Attempts, ev.NextAttempt = false, 0, o.now()
	return nil
}

// ParkedEvents pages by the id of the last event listed.
func (o *memOutbox) ParkedEvents(_ context.Context, route, after string, limit int) ([]*storage.Event, string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var all []*storage.Event
	for _, ev := range o.events {
		if ev.Parked && (route == "" || ev.Route == route) {
			all = append(all, clone(ev))
		}
	}
	slices.SortFunc(all, func(a, b *storage.Event) int {
		if earlier(a, b) {
			return -1
		}
		return 1
	})
	if after != "" {
		i := slices.IndexFunc(all, func(ev *storage.Event) bool { return ev.ID == after })
		if i < 0 {
			return nil, "", storage.ErrBadCursor
		}
		all = all[i+1:]
	}
	if len(all) > limit {
		return all[:limit], all[limit-1].ID, nil
	}
	return all, "", nil
}

func (o *memOutbox) ReplayEvent(_ context.Context, id string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	ev := o.events[id]
	if ev == nil || !ev.Parked {
		return storage.ErrNotFound
	}
	ev.Parked, ev.Attempts, ev.NextAttempt = false, 0, o.now()
	return nil
}

var _ storage.Outbox = (*memOutbox)(nil)

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
