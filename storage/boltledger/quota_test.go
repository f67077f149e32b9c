package boltledger

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage"
	"github.com/caddyupload/caddyupload/storage/storagetest"
	bolt "go.etcd.io/bbolt"
)

func TestQuotaConformance(t *testing.T) {
	for _, mode := range testModes {
		t.Run(mode.name, func(t *testing.T) {
			storagetest.RunQuota(t, func(t *testing.T, dir string) storage.QuotaLedger {
				l, err := Open(filepath.Join(dir, "ledger.db"), mode.opts)
				if err != nil {
					t.Fatal(err)
				}
				return usageAudited{auditedLedger{l, t}}
			})
		})
	}
}

// usageAudited also checks, when the suite closes it, that every stored
// usage counts exactly the pending records of its key.
type usageAudited struct{ auditedLedger }

func (a usageAudited) Close() error {
	if err := a.db.View(auditUsage); err != nil {
		a.t.Errorf("ledger %s: %v", a.path, err)
	}
	return a.auditedLedger.Close()
}

func auditUsage(tx *bolt.Tx) error {
	want := map[string]*storage.Usage{}
	err := tx.Bucket(bucketRecords).ForEach(func(_, v []byte) error {
		rec, err := decodeRecord(v)
		if err != nil {
			return err
		}
		if rec.Status != storage.StatusPending {
			return nil
		}
		d := string(storage.QuotaKeyOf(rec).Digest())
		if want[d] == nil {
			want[d] = new(storage.Usage)
		}
		want[d].Pending++
		want[d].PendingBytes += storage.Charge(rec)
		return nil
	})
	if err != nil {
		return err
	}
	return tx.Bucket(bucketUsage).ForEach(func(k, v []byte) error {
		var u storage.Usage
		if err := u.UnmarshalBinary(v); err != nil {
			return err
		}
		w := want[string(k)]
		if w == nil {
			w = new(storage.Usage)
		}
		if u.Pending != w.Pending || u.PendingBytes != w.PendingBytes {
			return fmt.Errorf("usage %x counts %d pending (%d bytes), the records %d (%d)", k, u.Pending, u.PendingBytes, w.Pending, w.PendingBytes)
		}
		delete(want, string(k))
		return nil
	})
}

// TestQuotaUsageBackfill: a file written without usage (by a version
// before quotas) gets its usage counted from its records when it is
// opened.
func TestQuotaUsageBackfill(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	l, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	at := time.Unix(1_950_000_000, 0).UTC()
	rec := func(id string, st storage.Status, size, maxSize int64) *storage.Record {
		r := &storage.Record{ID: id, Key: "k/" + id, Status: st, Size: size, CreatedAt: at,
			Internal: storage.RecordInternal{Store: "s3:b", Route: "r", Subject: "alice", Source: "src", Kind: storage.KindPut,
				MaxSize: maxSize, ExpiresAt: at.Add(time.Hour), UpdatedAt: at}}
		if st == storage.StatusConfirmed {
			r.ConfirmedAt = &at
		}
		return r
	}
	for _, r := range []*storage.Record{
		rec("p1", storage.StatusPending, 10, 0),
		rec("p2", storage.StatusPending, 0, 500),
		rec("c1", storage.StatusConfirmed, 7, 0),
		rec("x1", storage.StatusAborted, 99, 0),
	} {
		if err := l.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Remove the usage, as an older version's file has none.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketUsage) }); err != nil {
		t.Fatal(err)
	}
	db.Close()

	l = openTest(t, path, Options{})
	u, err := l.Usage(ctx, storage.QuotaKey{Route: "r", Source: "src", Subject: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if u.Pending != 2 || u.PendingBytes != 510 || u.Uploads != 1 || u.Bytes != 7 {
		t.Fatalf("backfilled usage %+v", u)
	}
	// And it moves on from there.
	if _, err := l.Update(ctx, "p2", func(r *storage.Record) error { r.Status = storage.StatusExpired; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := l.CreateWithin(ctx, rec("p3", storage.StatusPending, 1, 0), storage.Limits{Pending: 2}); err != nil {
		t.Fatal(err)
	}
	if err := l.CreateWithin(ctx, rec("p4", storage.StatusPending, 1, 0), storage.Limits{Pending: 2}); err == nil {
		t.Fatal("a third pending upload fit a limit of 2")
	}
}
