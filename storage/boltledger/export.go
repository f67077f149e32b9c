package boltledger

import (
	"context"
	"fmt"

	"github.com/caddyupload/caddyupload/storage"
	bolt "go.etcd.io/bbolt"
)

// Export reads every record and event in one read transaction: a
// consistent snapshot, even of a ledger in use.
func (l *Ledger) Export(ctx context.Context, rec func(*storage.Record) error, ev func(*storage.Event) error) error {
	return l.view(ctx, func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketRecords).ForEach(func(k, v []byte) error {
			r, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("record %s: %w", k, err)
			}
			return rec(r)
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
			e, err := decodeEvent(v)
			if err != nil {
				return fmt.Errorf("event %s: %w", k, err)
			}
			return ev(e)
		})
	})
}

var _ storage.Exporter = (*Ledger)(nil)
