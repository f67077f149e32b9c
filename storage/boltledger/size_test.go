package boltledger

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyupload/caddyupload/storage"
)

// fullRecord is a record at the module's limits: a 255-byte filename and
// 4 KiB of metadata, announced to a webhook.
func fullRecord(i int) *storage.Record {
	r := testRecord(fmt.Sprintf("rec-%08d", i), fmt.Sprintf("uploads/user/%08d-0b0e7c9e-8f5d-4c1a-9c39-2b8f0a1d2e3f.jpg", i))
	r.Filename = strings.Repeat("f", 251) + ".jpg"
	r.Metadata = map[string]string{}
	for k := range 4 {
		r.Metadata[fmt.Sprintf("key-%d", k)] = strings.Repeat("v", 1024-6)
	}
	r.Internal.Notify = true
	r.Internal.Route = "uploads"
	return r
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestBytesPerRecord measures what a record at the limits costs on disk,
// with the outbox event of its confirmation, and keeps it bounded.
func TestBytesPerRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	l := openTest(t, path, Options{})
	ctx := t.Context()
	start := fileSize(t, path)
	const n = 1000
	for i := range n {
		if err := l.Create(ctx, fullRecord(i)); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Update(ctx, fmt.Sprintf("rec-%08d", i), func(r *storage.Record) error {
			r.Status = storage.StatusConfirmed
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	per := (fileSize(t, path) - start) / n
	t.Logf("%d bytes on disk per record at the limits, its confirmation event included", per)
	if per > 24<<10 {
		t.Errorf("%d bytes per record: over 24 KiB", per)
	}
}

// TestSteadyStateFileSize: with records retired as fast as they are made
// (a window of live records), the file stops growing: bbolt reuses the
// pages that deletes free. Control: the same records kept grow the file.
func TestSteadyStateFileSize(t *testing.T) {
	run := func(retire bool) []int64 {
		path := filepath.Join(t.TempDir(), "ledger.db")
		l := openTest(t, path, Options{})
		ctx := t.Context()
		const window, total = 300, 3000
		var sizes []int64
		for i := range total {
			r := fullRecord(i)
			r.Internal.Notify = false
			r.Status = storage.StatusAborted
			if err := l.Create(ctx, r); err != nil {
				t.Fatal(err)
			}
			if retire && i >= window {
				if err := l.Delete(ctx, fmt.Sprintf("rec-%08d", i-window), func(*storage.Record) error { return nil }); err != nil {
					t.Fatal(err)
				}
			}
			if (i+1)%(total/4) == 0 {
				sizes = append(sizes, fileSize(t, path))
			}
		}
		return sizes
	}
	steady, kept := run(true), run(false)
	t.Logf("file size after each quarter of 3000 records at the limits: %v with a window of 300 live records, %v with all kept", steady, kept)
	// bbolt grows its file in doubling steps while its freelist settles;
	// then it stops: the last quarter adds nothing.
	if steady[3] > steady[2] {
		t.Errorf("the file keeps growing: %v", steady)
	}
	if kept[3] < steady[3]*4 {
		t.Errorf("control: keeping every record should need far more room: %v vs %v", kept, steady)
	}
}
