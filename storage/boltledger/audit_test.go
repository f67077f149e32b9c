package boltledger

import (
	"bytes"
	"fmt"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// checkConsistent runs bbolt's page check and audits the indexes: every
// record has its keys entry, every record the sweeper must act on
// (pending, or kept for a recheck or retirement) exactly its due entry, and
// no index entry points at anything else. The read path filters on the
// record itself, so a stale index entry would not show in answers.
func checkConsistent(t *testing.T, l *Ledger) {
	t.Helper()
	err := l.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return auditIndexes(tx)
	})
	if err != nil {
		t.Errorf("ledger %s is inconsistent: %v", l.path, err)
	}
}

func auditIndexes(tx *bolt.Tx) error {
	keys, due := tx.Bucket(bucketKeys), tx.Bucket(bucketDue)
	dueRecs := 0
	err := tx.Bucket(bucketRecords).ForEach(func(k, v []byte) error {
		rec, err := decodeRecord(v)
		if err != nil {
			return err
		}
		if rec.ID != string(k) {
			return fmt.Errorf("record under %q has id %q", k, rec.ID)
		}
		if id := keys.Get(keyIndexKey(rec.Internal.Store, rec.Key)); string(id) != rec.ID {
			return fmt.Errorf("keys entry of %s points at %q", rec.ID, id)
		}
		if rec.NeedsSweep() {
			dueRecs++
			b := due.Bucket([]byte(rec.Internal.Store))
			if b == nil || b.Get(dueKey(rec.Internal.ExpiresAt, rec.ID)) == nil {
				return fmt.Errorf("%s record %s has no due entry", rec.Status, rec.ID)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n := keys.Stats().KeyN; n != tx.Bucket(bucketRecords).Stats().KeyN {
		return fmt.Errorf("%d keys entries for %d records", n, tx.Bucket(bucketRecords).Stats().KeyN)
	}
	dueN := 0
	err = due.ForEachBucket(func(store []byte) error {
		return due.Bucket(store).ForEach(func(k, _ []byte) error {
			dueN++
			rec, err := getRecord(tx, string(k[8:]))
			if err != nil {
				return fmt.Errorf("due entry %x: %w", k, err)
			}
			if !rec.NeedsSweep() || rec.Internal.Store != string(store) || !bytes.Equal(k, dueKey(rec.Internal.ExpiresAt, rec.ID)) {
				return fmt.Errorf("stale due entry %x in store %q for %+v", k, store, rec)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	if dueN != dueRecs {
		return fmt.Errorf("%d due entries for %d records due", dueN, dueRecs)
	}
	return auditEvents(tx)
}

// auditEvents checks that every event has exactly the index entry its state
// calls for and that no index entry points at anything else.
func auditEvents(tx *bolt.Tx) error {
	events := tx.Bucket(bucketEvents)
	err := events.ForEach(func(k, v []byte) error {
		ev, err := decodeEvent(v)
		if err != nil {
			return err
		}
		if ev.ID != string(k) || ev.Record == nil || ev.ID != ev.Record.ID+":"+ev.Type {
			return fmt.Errorf("event under %q is %+v", k, ev)
		}
		m := eventIndexMutation(ev, false)
		if tx.Bucket(m.bucket).Get(m.key) == nil {
			return fmt.Errorf("event %s has no %s entry", ev.ID, m.bucket)
		}
		return nil
	})
	if err != nil {
		return err
	}
	indexed := 0
	for _, name := range [][]byte{bucketEventsDue, bucketEventsParked} {
		err := tx.Bucket(name).ForEach(func(k, _ []byte) error {
			indexed++
			_, _, id, ok := splitRouteTimeKey(k)
			if !ok {
				return fmt.Errorf("malformed %s entry %x", name, k)
			}
			ev, err := getEvent(tx, id)
			if err != nil {
				return fmt.Errorf("%s entry %x: %w", name, k, err)
			}
			if m := eventIndexMutation(ev, false); !bytes.Equal(m.bucket, name) || !bytes.Equal(m.key, k) {
				return fmt.Errorf("stale %s entry %x for %+v", name, k, ev)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if n := events.Stats().KeyN; n != indexed {
		return fmt.Errorf("%d event index entries for %d events", indexed, n)
	}
	return nil
}
