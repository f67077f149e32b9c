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
	rec := &storage.Record{
		ID: id, Key: "docs/" + id, Status: storage.StatusConfirmed, Filename: id + ".txt", Size: 10, Type: "text/plain",
		CreatedAt: t.Add(-time.Minute), Internal: storage.RecordInternal{Subject: "alice", Route: route, Notify: true},
	}
	ev := &storage.Event{ID: id + ":" + storage.EventConfirmed, Type: storage.EventConfirmed, Route: route, CreatedAt: t, Record: rec, NextAttempt: t}
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
		if ev.Route == route && !ev.Parked && !ev.NextAttempt.After(t) {
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

func (o *memOutbox) RerouteEvent(context.Context, string, string) error { return storage.ErrNotFound }

func (o *memOutbox) ParkedEvents(_ context.Context, route, _ string, limit int) ([]*storage.Event, string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*storage.Event
	for _, ev := range o.events {
		if ev.Parked && (route == "" || ev.Route == route) && len(out) < limit {
			out = append(out, clone(ev))
		}
	}
	return out, "", nil
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
