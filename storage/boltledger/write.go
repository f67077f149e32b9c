package boltledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/caddyupload/caddyupload/storage"
	bolt "go.etcd.io/bbolt"
)

// mutation is one Put or Delete. Writes are first computed as mutations and
// only then applied, so an operation that fails (a conflict, an error from
// the update function) has changed nothing in a transaction it shares with
// other operations.
type mutation struct {
	bucket []byte // a root bucket
	nested []byte // a bucket inside it (a store's due bucket), or nil
	key    []byte
	value  []byte
	del    bool
}

// prepareFunc computes one write inside a write transaction without making
// it: it returns the mutations and the record to answer with, or an error.
type prepareFunc func(tx *bolt.Tx) ([]mutation, *storage.Record, error)

// Create stores a new record; storage.ErrConflict if its id or (store, key)
// exists already. rec is not retained.
func (l *Ledger) Create(ctx context.Context, rec *storage.Record) error {
	prepare, err := createOp(rec)
	if err != nil {
		return err
	}
	_, err = l.write(ctx, prepare)
	return err
}

// Update applies fn to a copy of the current record inside the write
// transaction and stores the result with its index entries; an error from fn
// aborts the update and is returned as is, and a panic in fn is raised again
// in the caller. fn must not change the id. fn runs in a transaction shared
// with other writes: it should be quick and must not write to the ledger
// (that would wait for itself).
func (l *Ledger) Update(ctx context.Context, id string, fn func(*storage.Record) error) (*storage.Record, error) {
	return l.write(ctx, updateOp(id, fn))
}

func createOp(rec *storage.Record) (prepareFunc, error) { return createOpWithin(rec, nil) }

// createOpWithin is createOp with a quota check when lim is set.
func createOpWithin(rec *storage.Record, lim *storage.Limits) (prepareFunc, error) {
	if err := checkRecord(rec); err != nil {
		return nil, err
	}
	// Encoding here, in the caller's goroutine, spreads the work over
	// cores and leaves the caller free to reuse rec once Create returns.
	val, err := encodeRecord(rec)
	if err != nil {
		return nil, err
	}
	id := []byte(rec.ID)
	kk := keyIndexKey(rec.Internal.Store, rec.Key)
	muts := []mutation{
		{bucket: bucketRecords, key: id, value: val},
		{bucket: bucketKeys, key: kk, value: id},
	}
	if rec.NeedsSweep() {
		muts = append(muts, dueMutation(rec, false))
	}
	store, key := rec.Internal.Store, rec.Key
	var snap *storage.Record // for the outbox, taken now for the same reason
	if rec.Internal.Notify {
		snap = rec.Clone()
	}
	qkey, changes, adm := storage.QuotaKeyOf(rec), storage.UsageChanges(nil, rec), newAdmission(rec, lim)
	return func(tx *bolt.Tx) ([]mutation, *storage.Record, error) {
		if tx.Bucket(bucketRecords).Get(id) != nil {
			return nil, nil, fmt.Errorf("record %s exists: %w", id, storage.ErrConflict)
		}
		if tx.Bucket(bucketKeys).Get(kk) != nil {
			return nil, nil, fmt.Errorf("key %q in store %q is taken: %w", key, store, storage.ErrConflict)
		}
		usageMuts, err := usageMutations(tx, qkey, changes, adm)
		if err != nil {
			return nil, nil, err
		}
		out := append(muts[:len(muts):len(muts)], usageMuts...)
		if snap == nil {
			return out, nil, nil
		}
		// A record created in a final status reports it at once.
		evMuts, err := eventMutations(tx, storage.StatusPending, snap)
		if err != nil {
			return nil, nil, err
		}
		return append(out, evMuts...), nil, nil
	}, nil
}

func updateOp(id string, fn func(*storage.Record) error) prepareFunc {
	return func(tx *bolt.Tx) ([]mutation, *storage.Record, error) {
		rec, err := getRecord(tx, id)
		if err != nil {
			return nil, nil, err
		}
		old := rec.Clone()
		if err := fn(rec); err != nil {
			return nil, nil, err
		}
		if rec.ID != id {
			return nil, nil, fmt.Errorf("update of record %s changed its id to %q", id, rec.ID)
		}
		if err := checkRecord(rec); err != nil {
			return nil, nil, err
		}
		val, err := encodeRecord(rec)
		if err != nil {
			return nil, nil, err
		}
		muts := []mutation{{bucket: bucketRecords, key: []byte(id), value: val}}

		oldKK := keyIndexKey(old.Internal.Store, old.Key)
		newKK := keyIndexKey(rec.Internal.Store, rec.Key)
		if !bytes.Equal(oldKK, newKK) {
			if tx.Bucket(bucketKeys).Get(newKK) != nil {
				return nil, nil, fmt.Errorf("key %q in store %q is taken: %w", rec.Key, rec.Internal.Store, storage.ErrConflict)
			}
			muts = append(muts,
				mutation{bucket: bucketKeys, key: oldKK, del: true},
				mutation{bucket: bucketKeys, key: newKK, value: []byte(id)})
		}

		wasDue, isDue := old.NeedsSweep(), rec.NeedsSweep()
		moved := old.Internal.Store != rec.Internal.Store || dueNanos(old.Internal.ExpiresAt) != dueNanos(rec.Internal.ExpiresAt)
		if wasDue && (!isDue || moved) {
			muts = append(muts, dueMutation(old, true))
		}
		if isDue && (!wasDue || moved) {
			muts = append(muts, dueMutation(rec, false))
		}
		evMuts, err := eventMutations(tx, old.Status, rec)
		if err != nil {
			return nil, nil, err
		}
		muts = append(muts, evMuts...)
		usageMuts, err := usageMutations(tx, storage.QuotaKey{}, storage.UsageChanges(old, rec), nil)
		if err != nil {
			return nil, nil, err
		}
		muts = append(muts, usageMuts...)
		// fn may have kept a pointer to rec; the caller gets its own copy.
		return muts, rec.Clone(), nil
	}
}

func dueMutation(rec *storage.Record, del bool) mutation {
	m := mutation{bucket: bucketDue, nested: []byte(rec.Internal.Store), key: dueKey(rec.Internal.ExpiresAt, rec.ID), del: del}
	if !del {
		m.value = []byte{}
	}
	return m
}

// checkRecord rejects what bbolt could not store, before anything is
// written: a Put failing halfway would spoil the whole group's transaction.
func checkRecord(rec *storage.Record) error {
	switch {
	case rec.ID == "":
		return errors.New("record without id")
	case rec.Key == "":
		return fmt.Errorf("record %s without key", rec.ID)
	case rec.Internal.Store == "":
		return fmt.Errorf("record %s without store", rec.ID)
	case bytes.IndexByte([]byte(rec.Internal.Store), 0) >= 0:
		return fmt.Errorf("record %s: store contains a zero byte", rec.ID)
	case len(rec.Internal.Store)+1+len(rec.Key) > bolt.MaxKeySize || 8+len(rec.ID) > bolt.MaxKeySize:
		return fmt.Errorf("record %s: id, store or key too long", rec.ID)
	case rec.Internal.Notify && bytes.IndexByte([]byte(rec.Internal.Route), 0) >= 0:
		return fmt.Errorf("record %s: route contains a zero byte", rec.ID)
	case rec.Internal.Notify && len(rec.Internal.Route)+1+8+len(rec.ID)+maxEventSuffix > bolt.MaxKeySize:
		return fmt.Errorf("record %s: id or route too long for an event", rec.ID)
	}
	return nil
}

// applyMutations makes the writes of one operation.
func applyMutations(tx *bolt.Tx, muts []mutation) error {
	for _, m := range muts {
		b := tx.Bucket(m.bucket)
		if m.nested != nil {
			if m.del {
				if b = b.Bucket(m.nested); b == nil {
					continue
				}
			} else {
				var err error
				if b, err = b.CreateBucketIfNotExists(m.nested); err != nil {
					return err
				}
			}
		}
		var err error
		if m.del {
			err = b.Delete(m.key)
		} else {
			err = b.Put(m.key, m.value)
		}
		if err != nil {
			return fmt.Errorf("%s %q: %w", m.bucket, m.key, err)
		}
	}
	return nil
}
