package boltledger

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/caddyupload/caddyupload/storage"
	bolt "go.etcd.io/bbolt"
)

// view runs fn in a read transaction unless the ledger or ctx is done.
func (l *Ledger) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if l.closed.Load() {
		return ErrClosed
	}
	if err := l.Failed(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.db.View(fn)
}

// Get returns a copy of the record with id, or storage.ErrNotFound.
func (l *Ledger) Get(ctx context.Context, id string) (*storage.Record, error) {
	var rec *storage.Record
	err := l.view(ctx, func(tx *bolt.Tx) error {
		var err error
		rec, err = getRecord(tx, id)
		return err
	})
	return rec, err
}

// GetByKey returns a copy of the record that issued key in store, or
// storage.ErrNotFound.
func (l *Ledger) GetByKey(ctx context.Context, store, key string) (*storage.Record, error) {
	var rec *storage.Record
	err := l.view(ctx, func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketKeys).Get(keyIndexKey(store, key))
		if id == nil {
			return fmt.Errorf("key %q in store %q: %w", key, store, storage.ErrNotFound)
		}
		var err error
		rec, err = getRecord(tx, string(id))
		return err
	})
	return rec, err
}

// DueSweep lists up to limit records of store that need the sweeper with
// Internal.ExpiresAt before t, oldest first.
func (l *Ledger) DueSweep(ctx context.Context, store string, t time.Time, limit int) ([]*storage.Record, error) {
	var out []*storage.Record
	err := l.view(ctx, func(tx *bolt.Tx) error {
		due := tx.Bucket(bucketDue).Bucket([]byte(store))
		if due == nil || limit <= 0 {
			return nil
		}
		bound := dueNanos(t)
		c := due.Cursor()
		for k, _ := c.First(); k != nil && len(out) < limit; k, _ = c.Next() {
			if len(k) < 8 || binary.BigEndian.Uint64(k) > bound {
				break
			}
			rec, err := getRecord(tx, string(k[8:]))
			if err != nil {
				return fmt.Errorf("due index of store %q: %w", store, err)
			}
			// The index only holds records that need the sweeper; the
			// checks guard against a clamped time equal to the bound.
			if rec.NeedsSweep() && rec.Internal.ExpiresAt.Before(t) {
				out = append(out, rec)
			}
		}
		return nil
	})
	return out, err
}

// getRecord decodes the record with id; the result shares no memory with tx.
func getRecord(tx *bolt.Tx, id string) (*storage.Record, error) {
	v := tx.Bucket(bucketRecords).Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("record %s: %w", id, storage.ErrNotFound)
	}
	rec, err := decodeRecord(v)
	if err != nil {
		return nil, fmt.Errorf("record %s: %w", id, err)
	}
	return rec, nil
}
