package pgledger

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

// BenchmarkCreate measures durable creates from many concurrent callers, as
// under a burst of upload requests; shaped like the bbolt ledger's so the
// two compare. writes/fsync counts the WAL flushes the server made
// (pg_stat_wal): PostgreSQL shares one flush among the commits waiting for
// it, with or without the ledger's group commit.
func BenchmarkCreate(b *testing.B) {
	dsn := realservers.Postgres(b)
	for _, mode := range testModes {
		b.Run(mode.name, func(b *testing.B) {
			opts := mode.opts
			opts.Schema = "bench_" + fmt.Sprint(rand.Uint64())
			opts.MaxConns = 16
			l := openTest(b, dsn, opts)
			syncs := walSyncs(b, l)
			var n atomic.Int64
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := fmt.Sprintf("bench-%09d", n.Add(1))
					if err := l.Create(context.Background(), testRecord(id, "k/"+id)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			s := l.Stats()
			b.ReportMetric(float64(s.Writes)/float64(max(s.Commits, 1)), "writes/commit")
			b.ReportMetric(float64(s.Writes)/float64(max(walSyncs(b, l)-syncs, 1)), "writes/fsync")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
		})
	}
}

// walSyncs is the server's count of WAL fsyncs.
func walSyncs(b *testing.B, l *Ledger) int64 {
	b.Helper()
	var n int64
	if err := l.pool.QueryRow(context.Background(), "SELECT wal_sync FROM pg_stat_wal").Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

func BenchmarkGet(b *testing.B) {
	l := openTest(b, realservers.Postgres(b), Options{})
	const n = 10000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("get-%06d", i)
	}
	// Load through one statement: the setup is not what is measured.
	batch := make([]*createReq, n)
	for i, id := range ids {
		rec := testRecord(id, "k/"+id)
		data, err := encodeRecord(rec)
		if err != nil {
			b.Fatal(err)
		}
		batch[i] = &createReq{ctx: context.Background(), rec: rec, args: recordArgs(rec, data), res: make(chan error, 1)}
	}
	l.group.run(batch)
	for _, r := range batch {
		if err := <-r.res; err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Get(context.Background(), ids[rand.IntN(n)]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkCreateInstances is BenchmarkCreate's group-commit mode with the
// creates spread over one or two Ledger values on one schema, as one or two
// Caddy instances share a database.
func BenchmarkCreateInstances(b *testing.B) {
	dsn := realservers.Postgres(b)
	for _, instances := range []int{1, 2} {
		b.Run(fmt.Sprintf("instances=%d", instances), func(b *testing.B) {
			schema := "bench_" + fmt.Sprint(rand.Uint64())
			ls := make([]*Ledger, instances)
			for i := range ls {
				ls[i] = openTest(b, dsn, Options{Schema: schema, MaxConns: int32(16 / instances)})
			}
			var n atomic.Int64
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					id := fmt.Sprintf("bench-%09d", i)
					r := testRecord(id, "k/"+id)
					r.Internal.Subject = fmt.Sprintf("user-%d", i%64) // users spread, as on a site
					if err := ls[i%int64(instances)].Create(context.Background(), r); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
		})
	}
}
