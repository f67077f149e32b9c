package caddyupload

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/internal/realservers"
	"github.com/caddyupload/caddyupload/storage"
	"github.com/caddyupload/caddyupload/storage/s3store"
)

// BenchmarkSweep expires abandoned uploads against the in-process S3
// server: listing, claiming, DeleteObjects calls, and the ledger writes;
// uploads/s is what the sweeper keeps up with.
func BenchmarkSweep(b *testing.B) {
	srv := realservers.SharedFake(b)
	h := &Handler{Key: "s/{uuid}{ext}"}
	h.setDefaults()
	if err := provisionForTest(b, h); err != nil {
		b.Fatal(err)
	}
	st, err := s3store.New(context.Background(), s3store.Config{
		Endpoint: srv.Endpoint, Region: srv.Region, Bucket: srv.NewBucket(b),
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, UsePathStyle: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	h.store, h.completing = st, new(recordLocks)
	ctx := context.Background()
	const batch = 2000
	swept := 0
	for b.Loop() {
		b.StopTimer()
		past := time.Now().Add(-time.Hour)
		recs := make([]*storage.Record, batch)
		for i := range recs {
			recs[i] = h.newRecord(identity{Subject: "bench-user"}, upload{filename: "a.txt", size: 10, mimeType: "text/plain", ext: ".txt"}, storage.KindPut)
			recs[i].Internal.ExpiresAt = past
		}
		// Concurrent creates share commits: the setup stays short.
		if err := inParallel(recs, func(rec *storage.Record) error { return h.ledger.Create(ctx, rec) }); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		n, err := h.sweep(ctx, time.Now())
		if err != nil || n != batch {
			b.Fatalf("swept %d, %v", n, err)
		}
		swept += n
	}
	b.ReportMetric(float64(swept)/b.Elapsed().Seconds(), "uploads/s")
}

// inParallel runs fn on every record, 64 at a time (test setup).
func inParallel(recs []*storage.Record, fn func(*storage.Record) error) error {
	var (
		wg    sync.WaitGroup
		first atomic.Pointer[error]
	)
	sem := make(chan struct{}, 64)
	for _, rec := range recs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(rec); err != nil {
				first.CompareAndSwap(nil, &err)
			}
		})
	}
	wg.Wait()
	if p := first.Load(); p != nil {
		return *p
	}
	return nil
}
