package boltledger

import (
	"bytes"
	"context"

	"github.com/caddyupload/caddyupload/storage"
	bolt "go.etcd.io/bbolt"
)

// Delete removes record id and its index entries when check allows it;
// its outbox events stay.
func (l *Ledger) Delete(ctx context.Context, id string, check func(*storage.Record) error) error {
	_, err := l.write(ctx, func(tx *bolt.Tx) ([]mutation, *storage.Record, error) {
		rec, err := getRecord(tx, id)
		if err != nil {
			return nil, nil, err
		}
		if err := check(rec.Clone()); err != nil {
			return nil, nil, err
		}
		muts := []mutation{
			{bucket: bucketRecords, key: []byte(id), del: true},
			{bucket: bucketKeys, key: keyIndexKey(rec.Internal.Store, rec.Key), del: true},
		}
		if rec.NeedsSweep() {
			muts = append(muts, dueMutation(rec, true))
		}
		usageMuts, err := usageMutations(tx, storage.QuotaKey{}, storage.UsageChanges(rec, nil), nil)
		if err != nil {
			return nil, nil, err
		}
		return append(muts, usageMuts...), nil, nil
	})
	return err
}

// List scans records from the newest id down, decoding each, until
// q.Limit match.
func (l *Ledger) List(ctx context.Context, q storage.ListQuery) ([]*storage.Record, string, error) {
	if q.Limit <= 0 {
		return nil, "", nil
	}
	var out []*storage.Record
	next := ""
	err := l.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		var k, v []byte
		if q.After == "" {
			k, v = c.Last()
		} else {
			k, v = c.Seek([]byte(q.After))
			if k == nil {
				k, v = c.Last()
			}
			for k != nil && bytes.Compare(k, []byte(q.After)) >= 0 {
				k, v = c.Prev()
			}
		}
		for ; k != nil; k, v = c.Prev() {
			if err := ctx.Err(); err != nil {
				return err
			}
			rec, err := decodeRecord(v)
			if err != nil {
				return err
			}
			if !matches(rec, q) {
				continue
			}
			if len(out) == q.Limit {
				next = out[len(out)-1].ID
				return nil
			}
			out = append(out, rec)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

func matches(rec *storage.Record, q storage.ListQuery) bool {
	return (q.Route == "" || rec.Internal.Route == q.Route) &&
		(q.Subject == "" || rec.Internal.Subject == q.Subject) &&
		(q.Status == "" || rec.Status == q.Status) &&
		(q.Before.IsZero() || rec.CreatedAt.Before(q.Before))
}
