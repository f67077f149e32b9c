package webhook

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// memLeases is a storage.Leaser in memory with a clock of its own: the
// shared database's, which the dispatchers never read.
type memLeases struct {
	now func() time.Time

	mu sync.Mutex
	m  map[string]memLease
	// down holds the holders cut off from the database: their calls fail.
	down map[string]bool
	// takes lists the holders in the order they took a lease from
	// nobody or from another holder.
	takes []string
	// renewals counts each holder's successful calls.
	renewals map[string]int
}

type memLease struct {
	holder string
	until  time.Time
}

func newLeases(now func() time.Time) *memLeases {
	return &memLeases{now: now, m: map[string]memLease{}, down: map[string]bool{}, renewals: map[string]int{}}
}

func (l *memLeases) TryLease(_ context.Context, name, holder string, ttl time.Duration) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down[holder] {
		return false, errors.New("connection refused")
	}
	now := l.now()
	cur, ok := l.m[name]
	if ok && cur.holder != holder && !cur.until.Before(now) {
		return false, nil
	}
	if !ok || cur.holder != holder {
		l.takes = append(l.takes, holder)
	}
	l.m[name] = memLease{holder: holder, until: now.Add(ttl)}
	l.renewals[holder]++
	return true, nil
}

func (l *memLeases) ReleaseLease(_ context.Context, name, holder string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down[holder] {
		return errors.New("connection refused")
	}
	if l.m[name].holder == holder {
		delete(l.m, name)
	}
	return nil
}

func (l *memLeases) setDown(holder string, down bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down[holder] = down
}

func (l *memLeases) holderOf(name string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[name].holder
}

func (l *memLeases) state() (takes []string, renewals map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := make(map[string]int, len(l.renewals))
	for k, v := range l.renewals {
		r[k] = v
	}
	return append([]string(nil), l.takes...), r
}

// sharedOutbox is one process's view of an outbox and leases shared by
// several: every process has its own identity (its own in-process lease)
// and holder name, and they all see the same events.
type sharedOutbox struct {
	*memOutbox
	*memLeases
	id string
}

func (o sharedOutbox) Identity() string { return o.id }

var _ storage.Leaser = sharedOutbox{}

// startProcess starts the dispatcher of "process" holder on the shared
// outbox, posting to url; it stops when the test ends or on cancel.
func startProcess(t *testing.T, url string, events *memOutbox, leases *memLeases, holder string) (*Dispatcher, context.CancelFunc) {
	t.Helper()
	o := sharedOutbox{memOutbox: events, memLeases: leases, id: t.Name() + "/" + holder}
	d, err := newDispatcher(Config{URL: url, Secret: []byte(testSecret)}.WithDefaults(), Options{Outbox: o, Route: "docs"})
	if err != nil {
		t.Fatal(err)
	}
	d.holder = holder
	d.tick = 5 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	d.start(ctx)
	t.Cleanup(func() { cancel(); <-d.Done() })
	return d, cancel
}

// TestSharedLeaseOneProcessDelivers: two processes on one shared outbox;
// one delivers everything, the other takes over only once the first one's
// lease has expired by the database's clock after it died, and a process
// that stops cleanly hands the lease over at once.
func TestSharedLeaseOneProcessDelivers(t *testing.T) {
	dbClock := newClock()
	leases := newLeases(dbClock.Now)
	events := newOutbox(t.Name(), time.Now)
	rcv := map[string]*receiver{"A": newReceiver(t, time.Now), "B": newReceiver(t, time.Now), "C": newReceiver(t, time.Now)}
	stop := map[string]context.CancelFunc{}
	disp := map[string]*Dispatcher{}
	for _, h := range []string{"A", "B"} {
		disp[h], stop[h] = startProcess(t, rcv[h].srv.URL, events, leases, h)
	}
	remaining := func() int {
		events.mu.Lock()
		defer events.mu.Unlock()
		return len(events.events)
	}
	add := func(prefix string, n int) []string {
		var ids []string
		for i := range n {
			ids = append(ids, events.add("docs", fmt.Sprintf("%s%d", prefix, i), time.Now()))
		}
		return ids
	}
	const name = "webhook:docs"

	first := add("first", 30)
	eventually(t, "the first events delivered", func() bool { return remaining() == 0 })
	holder := leases.holderOf(name)
	other := map[string]string{"A": "B", "B": "A"}[holder]
	if holder == "" {
		t.Fatal("no process holds the lease after delivering")
	}
	for _, id := range first {
		if n, m := rcv[holder].count(id), rcv[other].count(id); n != 1 || m != 0 {
			t.Fatalf("%s: holder %s delivered it %d times, %s %d times; want once by the holder", id, holder, n, other, m)
		}
	}

	// The holder renews its lease while it runs: past its first expiry by
	// the database's clock it still holds it, and the other cannot take it.
	ttl := SharedLeaseTTL(disp[holder].cfg)
	for range 3 {
		_, before := leases.state()
		eventually(t, "a renewal", func() bool { _, r := leases.state(); return r[holder] > before[holder]+1 })
		dbClock.Advance(ttl / 2)
	}
	if takes, _ := leases.state(); len(takes) != 1 || takes[0] != holder {
		t.Fatalf("lease takes %v, want only %s", takes, holder)
	}

	// The holder dies (kill -9): it neither renews nor releases the lease.
	// Nothing is delivered until the lease expires by the database's clock;
	// then the other process delivers it all, once.
	leases.setDown(holder, true)
	stop[holder]()
	<-disp[holder].Done()
	second := add("second", 10)
	time.Sleep(100 * time.Millisecond) // many ticks of the survivor
	if n := len(rcv[other].got()); n != 0 || remaining() != len(second) {
		t.Fatalf("the survivor delivered %d events while the dead holder's lease ran", n)
	}
	dbClock.Advance(ttl + time.Second)
	eventually(t, "the survivor delivers", func() bool { return remaining() == 0 })
	for _, id := range second {
		if n := rcv[other].count(id); n != 1 {
			t.Fatalf("%s delivered %d times by the survivor", id, n)
		}
	}
	if h := leases.holderOf(name); h != other {
		t.Fatalf("lease held by %q after the takeover, want %s", h, other)
	}

	// A clean stop releases the lease: a new process delivers at once,
	// with the database's clock standing still.
	stop[other]()
	<-disp[other].Done()
	if h := leases.holderOf(name); h != "" {
		t.Fatalf("lease held by %q after a clean stop", h)
	}
	startProcess(t, rcv["C"].srv.URL, events, leases, "C")
	third := add("third", 5)
	eventually(t, "the new process delivers", func() bool { return remaining() == 0 })
	for _, id := range third {
		if n := rcv["C"].count(id); n != 1 {
			t.Fatalf("%s delivered %d times by the new process", id, n)
		}
	}
	if takes, _ := leases.state(); fmt.Sprint(takes) != fmt.Sprint([]string{holder, other, "C"}) {
		t.Fatalf("lease takes %v", takes)
	}
}

// TestSharedLeaseReloadKeepsIt: during a reload two configs of one process
// share its holder name, and the lease stays with the process.
func TestSharedLeaseReloadKeepsIt(t *testing.T) {
	dbClock := newClock()
	leases := newLeases(dbClock.Now)
	events := newOutbox(t.Name(), time.Now)
	oldApp, newApp := newReceiver(t, time.Now), newReceiver(t, time.Now)
	_, stopOld := startProcess(t, oldApp.srv.URL, events, leases, "P")
	id := events.add("docs", "rec1", time.Now())
	eventually(t, "delivered by the old config", func() bool { return events.get(id) == nil })
	// The new config starts beside the old one (same identity: one
	// in-process lease), then the old one stops.
	newD, _ := startProcess(t, newApp.srv.URL, events, leases, "P")
	stopOld()
	id2 := events.add("docs", "rec2", time.Now())
	newD.Wake()
	eventually(t, "delivered by the new config", func() bool { return events.get(id2) == nil })
	if oldApp.count(id) != 1 || newApp.count(id2) != 1 || oldApp.count(id2) != 0 {
		t.Fatalf("deliveries: old %d/%d, new %d", oldApp.count(id), oldApp.count(id2), newApp.count(id2))
	}
	if h := leases.holderOf("webhook:docs"); h != "P" {
		t.Fatalf("lease held by %q after the reload, want P", h)
	}
}
