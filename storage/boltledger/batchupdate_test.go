package boltledger

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/caddyupload/caddyupload/storage"
	"github.com/caddyupload/caddyupload/storage/storagetest"
	bolt "go.etcd.io/bbolt"
)

func TestBatchUpdateConformance(t *testing.T) {
	for _, mode := range testModes {
		t.Run(mode.name, func(t *testing.T) {
			storagetest.RunBatchUpdate(t, func(t *testing.T, dir string) storage.Ledger {
				l, err := Open(filepath.Join(dir, "ledger.db"), mode.opts)
				if err != nil {
					t.Fatal(err)
				}
				return dueAuditedLedger{l, t}
			})
		})
	}
}

// dueAuditedLedger checks on Close that the due index holds exactly the
// records that need the sweeper (closed ones with Recheck included, which
// the batch updates leave), each under its expiry.
type dueAuditedLedger struct {
	*Ledger
	t *testing.T
}

func (a dueAuditedLedger) Close() error {
	err := a.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		want := 0
		err := tx.Bucket(bucketRecords).ForEach(func(k, v []byte) error {
			rec, err := decodeRecord(v)
			if err != nil || !rec.NeedsSweep() {
				return err
			}
			want++
			if b := tx.Bucket(bucketDue).Bucket([]byte(rec.Internal.Store)); b == nil || b.Get(dueKey(rec.Internal.ExpiresAt, rec.ID)) == nil {
				return fmt.Errorf("%s needs the sweeper but has no due entry", rec.ID)
			}
			return nil
		})
		if err != nil {
			return err
		}
		got := 0
		err = tx.Bucket(bucketDue).ForEachBucket(func(store []byte) error {
			return tx.Bucket(bucketDue).Bucket(store).ForEach(func(k, _ []byte) error {
				got++
				rec, err := getRecord(tx, string(k[8:]))
				if err != nil || !rec.NeedsSweep() || !bytes.Equal(k, dueKey(rec.Internal.ExpiresAt, rec.ID)) {
					return fmt.Errorf("stale due entry %x (%v)", k, err)
				}
				return nil
			})
		})
		if err == nil && got != want {
			err = fmt.Errorf("%d due entries for %d records that need the sweeper", got, want)
		}
		return err
	})
	if err != nil {
		a.t.Errorf("ledger %s: %v", a.path, err)
	}
	return a.Ledger.Close()
}
