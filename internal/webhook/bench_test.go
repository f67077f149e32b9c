package webhook

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage/boltledger"
)

// BenchmarkDelivery measures how many events a route delivers per second
// from a bbolt ledger (each acknowledgement a durable write) to an
// application on the loopback that answers at once or after 50 ms, with 1,
// 8 and 32 attempts under way at once. One op is one event delivered; the
// ledger holds b.N confirmed uploads before the dispatcher starts.
//
//	go test -run '^$' -bench Delivery -benchtime 2s ./internal/webhook/
func BenchmarkDelivery(b *testing.B) {
	for _, app := range []struct {
		name  string
		delay time.Duration
	}{{"fast", 0}, {"50ms", 50 * time.Millisecond}} {
		for _, n := range []int{1, 8, 32} {
			b.Run(fmt.Sprintf("app=%s/concurrency=%d", app.name, n), func(b *testing.B) {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					_, _ = io.Copy(io.Discard, r.Body)
					time.Sleep(app.delay)
					w.WriteHeader(http.StatusNoContent)
				}))
				defer srv.Close()
				// Commit time, in ns, of the transactions that held an
				// acknowledgement: an attempt's slot is held until then.
				var commitNanos atomic.Int64
				l := openLedgerWith(b, boltledger.Options{OnCommit: func(d time.Duration, _ int, _ error) { commitNanos.Add(int64(d)) }})
				ids := make([]string, b.N)
				for i := range ids {
					ids[i] = fmt.Sprintf("bench%09d", i)
				}
				createConfirmed(b, l, ids)
				var delivered, failed atomic.Int64
				done := make(chan struct{})
				onAttempt := func(outcome string) {
					if outcome != "delivered" {
						failed.Add(1)
					} else if delivered.Add(1) == int64(b.N) {
						close(done)
					}
				}
				before, beforeNanos := l.Stats(), commitNanos.Load()
				b.ResetTimer()
				start := time.Now()
				startFast(b, Config{URL: srv.URL, Concurrency: n}, Options{Outbox: l, OnAttempt: onAttempt})
				select {
				case <-done:
				case <-time.After(10*time.Minute + time.Duration(b.N)*app.delay):
					b.Fatalf("%d of %d events delivered", delivered.Load(), b.N)
				}
				elapsed := time.Since(start)
				b.StopTimer()
				if f := failed.Load(); f != 0 {
					b.Fatalf("%d failed attempts", f)
				}
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
				// The acknowledgements of concurrent attempts share commits.
				after := l.Stats()
				commits := float64(max(after.Commits-before.Commits, 1))
				b.ReportMetric(float64(after.Writes-before.Writes)/commits, "acks/commit")
				b.ReportMetric(float64(commitNanos.Load()-beforeNanos)/commits/1e6, "ms/commit")
			})
		}
	}
}
