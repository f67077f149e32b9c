package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage"
	"github.com/caddyupload/caddyupload/storage/boltledger"
)

// app is an application endpoint for the concurrency tests and benchmarks.
// It tracks the attempts under way, by upload, and fails the test when two
// of one upload overlap; it answers after delay, 500 to a share of the
// attempts (failRate), and holds every attempt while gate is closed.
type app struct {
	t        testing.TB
	srv      *httptest.Server
	delay    time.Duration
	failRate float64

	gateMu sync.Mutex
	gate   chan struct{} // nil: open

	mu   sync.Mutex
	rng  *rand.Rand
	busy map[string]string // upload id → event id under way
	// underway and peak count the attempts under way, now and at most.
	underway, peak int
	// arrived counts the attempts that reached the app.
	arrived int
	// log holds each upload's attempts as "<event id> <status>", in the
	// order they were answered.
	log map[string][]string
	// delivered counts each event's attempts answered 2xx.
	delivered map[string]int
	overlaps  []string

	answered atomic.Int64
}

func newApp(t testing.TB, delay time.Duration, failRate float64) *app {
	a := &app{
		t: t, delay: delay, failRate: failRate, rng: rand.New(rand.NewPCG(1, 2)),
		busy: map[string]string{}, log: map[string][]string{}, delivered: map[string]int{},
	}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	t.Cleanup(a.open)
	t.Cleanup(func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, o := range a.overlaps {
			t.Error(o)
		}
	})
	return a
}

func (a *app) serve(w http.ResponseWriter, req *http.Request) {
	var p struct {
		ID   string `json:"id"`
		Data struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(req.Body).Decode(&p); err != nil || p.ID == "" || p.Data.ID == "" {
		a.t.Errorf("bad delivery: %v %+v", err, p)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	_, _ = io.Copy(io.Discard, req.Body)
	up := p.Data.ID
	a.mu.Lock()
	if other, ok := a.busy[up]; ok {
		a.overlaps = append(a.overlaps, fmt.Sprintf("upload %s: %s arrived while %s was under way", up, p.ID, other))
	}
	a.busy[up] = p.ID
	a.underway++
	a.peak = max(a.peak, a.underway)
	a.arrived++
	status := http.StatusNoContent
	if a.failRate > 0 && a.rng.Float64() < a.failRate {
		status = http.StatusInternalServerError
	}
	a.mu.Unlock()

	a.gateMu.Lock()
	gate := a.gate
	a.gateMu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-req.Context().Done():
		}
	}
	if a.delay > 0 {
		time.Sleep(a.delay)
	}

	// The attempt ends here, before the dispatcher can learn its outcome.
	a.mu.Lock()
	if a.busy[up] == p.ID {
		delete(a.busy, up)
	}
	a.underway--
	a.log[up] = append(a.log[up], fmt.Sprintf("%s %d", p.ID, status))
	if status < 300 {
		a.delivered[p.ID]++
	}
	a.mu.Unlock()
	a.answered.Add(1)
	w.WriteHeader(status)
}

// close holds the attempts that arrive from now on until open.
func (a *app) close() {
	a.gateMu.Lock()
	defer a.gateMu.Unlock()
	if a.gate == nil {
		a.gate = make(chan struct{})
	}
}

func (a *app) open() {
	a.gateMu.Lock()
	defer a.gateMu.Unlock()
	if a.gate != nil {
		close(a.gate)
		a.gate = nil
	}
}

// counts returns the attempts under way, their peak, and the attempts
// that arrived.
func (a *app) counts() (underway, peak, arrived int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.underway, a.peak, a.arrived
}

func (a *app) deliveredCount(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.delivered[id]
}

func (a *app) uploadLog(up string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.log[up]...)
}

// startFast starts a dispatcher for route "docs" on outbox that posts to
// url with the real clock, a short tick and retries due at once; it stops
// when the test ends or on cancel.
func startFast(tb testing.TB, cfg Config, o Options) (*Dispatcher, context.CancelFunc) {
	tb.Helper()
	if cfg.Secret == nil {
		cfg.Secret = []byte(testSecret)
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 1000
	}
	o.Route = "docs"
	d, err := newDispatcher(cfg.WithDefaults(), o)
	if err != nil {
		tb.Fatal(err)
	}
	d.jitter = func(time.Duration) time.Duration { return 0 }
	d.tick = 5 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	d.start(ctx)
	tb.Cleanup(func() { cancel(); <-d.Done() })
	return d, cancel
}

// openLedger opens a bbolt ledger in a temporary directory.
func openLedger(tb testing.TB) *boltledger.Ledger {
	tb.Helper()
	return openLedgerWith(tb, boltledger.Options{})
}

func openLedgerWith(tb testing.TB, opts boltledger.Options) *boltledger.Ledger {
	tb.Helper()
	l, err := boltledger.Open(filepath.Join(tb.TempDir(), "ledger.db"), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = l.Close() })
	return l
}

// confirmedRecord is an upload of route "docs" created confirmed: its
// upload.confirmed event is written with it.
func confirmedRecord(id string) *storage.Record {
	now := time.Now()
	return &storage.Record{
		ID: id, Key: "docs/" + id, Status: storage.StatusConfirmed, Filename: id + ".txt", Size: 10, Type: "text/plain",
		CreatedAt: now, ConfirmedAt: &now,
		Internal: storage.RecordInternal{Store: "s3:test", Subject: "alice", Route: "docs", Notify: true},
	}
}

// createConfirmed writes the confirmed uploads ids, from several
// goroutines so that the ledger commits them in groups.
func createConfirmed(tb testing.TB, l storage.Ledger, ids []string) {
	tb.Helper()
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(ids)); i = next.Add(1) - 1 {
				if err := l.Create(context.Background(), confirmedRecord(ids[i])); err != nil {
					tb.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if tb.Failed() {
		tb.FailNow()
	}
}

// abort changes upload id to aborted, which writes its upload.aborted event.
func abort(l storage.Ledger, id string) error {
	_, err := l.Update(context.Background(), id, func(r *storage.Record) error {
		r.Status = storage.StatusAborted
		return nil
	})
	return err
}
