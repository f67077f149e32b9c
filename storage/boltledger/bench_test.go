package boltledger

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// BenchmarkCreate measures durable creates from many concurrent callers, as
// under a burst of upload requests.
func BenchmarkCreate(b *testing.B) {
	for _, mode := range testModes {
		b.Run(mode.name, func(b *testing.B) {
			l, err := Open(filepath.Join(b.TempDir(), "ledger.db"), mode.opts)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			var n atomic.Int64
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := fmt.Sprintf("bench-%09d", n.Add(1))
					if err := l.Create(b.Context(), testRecord(id, "k/"+id)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			s := l.Stats()
			b.ReportMetric(float64(s.Writes)/float64(max(s.Commits, 1)), "writes/commit")
		})
	}
}

func BenchmarkGet(b *testing.B) {
	l, err := Open(filepath.Join(b.TempDir(), "ledger.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	const n = 10000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("get-%06d", i)
	}
	// Load through one transaction: the setup is not what is measured.
	var ops []*op
	for _, id := range ids {
		p, err := createOp(testRecord(id, "k/"+id))
		if err != nil {
			b.Fatal(err)
		}
		ops = append(ops, &op{ctx: b.Context(), prepare: p, done: make(chan result, 1)})
	}
	l.runBatch(ops)
	for _, o := range ops {
		if r := <-o.done; r.err != nil {
			b.Fatal(r.err)
		}
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Get(b.Context(), ids[rand.IntN(n)]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
