package webhook

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// TestConcurrentOrderPerUpload: many uploads, each confirmed and then
// aborted while the dispatcher delivers, to an application that fails a
// third of the attempts. Each upload's events arrive one at a time and in
// order: upload.confirmed until it is accepted, then upload.aborted until
// it is, never one again once accepted (the receiver fails the test on two
// attempts of one upload under way at once).
func TestConcurrentOrderPerUpload(t *testing.T) {
	const uploads = 60
	// "loose" lists every due event, however many of its upload wait:
	// the round alone keeps them from overlapping.
	for _, backend := range []string{"memory", "bolt", "loose"} {
		t.Run(backend, func(t *testing.T) {
			a := newApp(t, 2*time.Millisecond, 0.3)
			var (
				outbox   storage.Outbox
				abortOne func(id string)
				pending  func() int
			)
			ids := make([]string, uploads)
			for i := range ids {
				ids[i] = fmt.Sprintf("up%03d", i)
			}
			switch backend {
			case "memory", "loose":
				mem := newOutbox(t.Name(), time.Now)
				mem.loose = backend == "loose"
				for _, id := range ids {
					mem.add("docs", id, time.Now())
				}
				outbox = mem
				abortOne = func(id string) { mem.addEvent("docs", id, storage.StatusAborted, time.Now()) }
				pending = func() int {
					mem.mu.Lock()
					defer mem.mu.Unlock()
					return len(mem.events)
				}
			case "bolt":
				l := openLedger(t)
				createConfirmed(t, l, ids)
				outbox = l
				abortOne = func(id string) {
					if err := abort(l, id); err != nil {
						t.Error(err)
					}
				}
				pending = func() int {
					evs, err := l.DueEvents(context.Background(), "", time.Now().Add(time.Hour), 1000)
					if err != nil {
						t.Fatal(err)
					}
					return len(evs)
				}
			}
			d, _ := startFast(t, Config{URL: a.srv.URL, Concurrency: 8}, Options{Outbox: outbox})

			// The aborts come in while confirmed events are under way, as
			// a handler's would: each wakes the dispatcher.
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < uploads; i += 4 {
						abortOne(ids[i])
						d.Wake()
						time.Sleep(time.Millisecond)
					}
				}()
			}
			wg.Wait()
			eventually(t, "every event delivered", func() bool {
				for _, id := range ids {
					if a.deliveredCount(id+":upload.aborted") == 0 {
						return false
					}
				}
				return pending() == 0
			})

			for _, id := range ids {
				if backend == "loose" {
					// A retried upload.confirmed may be listed after,
					// or not with, upload.aborted.
					break
				}
				conf, aborted := id+":upload.confirmed", id+":upload.aborted"
				log := a.uploadLog(id)
				i := 0
				for i < len(log) && log[i] == conf+" 500" {
					i++
				}
				ok := i < len(log) && log[i] == conf+" 204"
				for i++; ok && i < len(log)-1; i++ {
					ok = log[i] == aborted+" 500"
				}
				if !ok || log[len(log)-1] != aborted+" 204" {
					t.Errorf("upload %s: attempts %v, want confirmed until accepted, then aborted until accepted", id, log)
				}
			}
			_, peak, arrived := a.counts()
			if peak > 8 {
				t.Errorf("%d attempts under way at once, concurrency 8", peak)
			}
			// Positive controls: uploads went out side by side, and the
			// application failed attempts.
			if peak < 2 || arrived < 2*uploads+10 {
				t.Errorf("peak %d, %d attempts for %d events: the test exercised little", peak, arrived, 2*uploads)
			}
		})
	}
}

// TestConcurrencyBound: no more attempts are under way than concurrency,
// and as many as that while a backlog waits; a backlog longer than a batch
// is delivered whole, each event once.
func TestConcurrencyBound(t *testing.T) {
	for _, n := range []int{1, 4, 16} {
		t.Run(fmt.Sprintf("concurrency=%d", n), func(t *testing.T) {
			a := newApp(t, 3*time.Millisecond, 0)
			mem := newOutbox(t.Name(), time.Now)
			events := 2*batch + 10
			for i := range events {
				mem.add("docs", fmt.Sprintf("up%04d", i), time.Now().Add(time.Duration(i)))
			}
			// The application holds the first attempts: as many as
			// concurrency arrive, and no more.
			a.close()
			startFast(t, Config{URL: a.srv.URL, Concurrency: n}, Options{Outbox: mem})
			eventually(t, "attempts under way", func() bool { u, _, _ := a.counts(); return u == n })
			time.Sleep(50 * time.Millisecond)
			if u, _, _ := a.counts(); u != n {
				t.Fatalf("%d attempts under way, concurrency %d", u, n)
			}
			a.open()
			eventually(t, "the backlog delivered", func() bool { return int(a.answered.Load()) >= events })
			eventually(t, "the backlog acknowledged", func() bool {
				mem.mu.Lock()
				defer mem.mu.Unlock()
				return len(mem.events) == 0
			})
			if _, peak, arrived := a.counts(); peak != n || arrived != events {
				t.Errorf("peak %d attempts under way, %d attempts of %d events; want a peak of %d, each once", peak, arrived, events, n)
			}
		})
	}
}

// TestLeaseLossStopsDeliveries: a dispatcher that loses its lease while
// attempts are under way records their outcomes and starts no other.
func TestLeaseLossStopsDeliveries(t *testing.T) {
	const events, n = 30, 4
	setup := func(t *testing.T) (*app, *memOutbox, []string) {
		a := newApp(t, 0, 0)
		mem := newOutbox(t.Name(), time.Now)
		var ids []string
		for i := range events {
			ids = append(ids, mem.add("docs", fmt.Sprintf("up%03d", i), time.Now().Add(time.Duration(i))))
		}
		// The first n attempts arrive and wait.
		a.close()
		return a, mem, ids
	}
	remaining := func(mem *memOutbox) int {
		mem.mu.Lock()
		defer mem.mu.Unlock()
		return len(mem.events)
	}
	checkOnce := func(t *testing.T, ids []string, apps ...*app) {
		for _, id := range ids {
			got := 0
			for _, a := range apps {
				got += a.deliveredCount(id)
			}
			if got != 1 {
				t.Errorf("%s delivered %d times", id, got)
			}
		}
	}

	t.Run("reload", func(t *testing.T) {
		a, mem, ids := setup(t)
		startFast(t, Config{URL: a.srv.URL, Concurrency: n}, Options{Outbox: mem})
		eventually(t, "attempts under way", func() bool { u, _, _ := a.counts(); return u == n })
		// A newer config's dispatcher takes the lease.
		b := newApp(t, 0, 0)
		startFast(t, Config{URL: b.srv.URL, Concurrency: n}, Options{Outbox: mem})
		time.Sleep(50 * time.Millisecond) // many ticks
		a.open()
		eventually(t, "the rest delivered by the new dispatcher", func() bool { return remaining(mem) == 0 })
		if _, _, arrived := a.counts(); arrived != n {
			t.Errorf("the old dispatcher made %d attempts, want only the %d under way when it lost the lease", arrived, n)
		}
		if _, _, arrived := b.counts(); arrived != events-n {
			t.Errorf("the new dispatcher made %d attempts, want %d", arrived, events-n)
		}
		checkOnce(t, ids, a, b)
	})

	t.Run("shared", func(t *testing.T) {
		a, mem, ids := setup(t)
		leases := newLeases(time.Now)
		o := sharedOutbox{memOutbox: mem, memLeases: leases, id: t.Name()}
		d, _ := startFast(t, Config{URL: a.srv.URL, Concurrency: n}, Options{Outbox: o})
		eventually(t, "attempts under way", func() bool { u, _, _ := a.counts(); return u == n })
		// The database cannot be reached: the lease cannot be renewed.
		leases.setDown(d.holder, true)
		time.Sleep(50 * time.Millisecond) // many ticks
		a.open()
		eventually(t, "the attempts under way recorded", func() bool { return remaining(mem) == events-n })
		time.Sleep(100 * time.Millisecond)
		if _, _, arrived := a.counts(); arrived != n || remaining(mem) != events-n {
			t.Fatalf("%d attempts, %d events left without the lease; want %d and %d", arrived, remaining(mem), n, events-n)
		}
		// Back in touch with the database, it takes the lease and
		// delivers the rest.
		leases.setDown(d.holder, false)
		eventually(t, "the rest delivered", func() bool { return remaining(mem) == 0 })
		checkOnce(t, ids, a)
		if _, _, arrived := a.counts(); arrived != events {
			t.Errorf("%d attempts of %d events", arrived, events)
		}
	})
}

// TestConcurrencyOneIsSequential: with concurrency 1 the events of
// different uploads go out one after the other, oldest first.
func TestConcurrencyOneIsSequential(t *testing.T) {
	a := newApp(t, time.Millisecond, 0)
	mem := newOutbox(t.Name(), time.Now)
	var ids []string
	for i := range 20 {
		ids = append(ids, mem.add("docs", fmt.Sprintf("up%03d", i), time.Now().Add(time.Duration(i))))
	}
	startFast(t, Config{URL: a.srv.URL, Concurrency: 1}, Options{Outbox: mem})
	eventually(t, "delivered", func() bool {
		mem.mu.Lock()
		defer mem.mu.Unlock()
		return len(mem.events) == 0
	})
	mem.mu.Lock()
	acks := strings.Join(mem.acks, ",")
	mem.mu.Unlock()
	if want := strings.Join(ids, ","); acks != want {
		t.Errorf("acknowledged in the order %s, want %s", acks, want)
	}
	if _, peak, _ := a.counts(); peak != 1 {
		t.Errorf("%d attempts under way at once", peak)
	}
}
