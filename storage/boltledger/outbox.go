package boltledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caddyupload/caddyupload/storage"
	bolt "go.etcd.io/bbolt"
)

// maxEventSuffix bounds what an event id adds to the record id (":" and
// the longest event type), for the key size check of checkRecord.
const maxEventSuffix = 32

// eventMutations returns the outbox writes of a change of rec from status
// old: none unless rec asks for notifications and reached a status that has
// an event. They belong to the same operation as the record's own writes, so
// the event is committed exactly when the change is. An event of the same id
// still waiting (the record went back and forth) is replaced.
func eventMutations(tx *bolt.Tx, old storage.Status, rec *storage.Record) ([]mutation, error) {
	typ := storage.EventFor(rec.Status)
	if !rec.Internal.Notify || rec.Status == old || typ == "" {
		return nil, nil
	}
	now := time.Now().UTC()
	ev := &storage.Event{
		ID:          rec.ID + ":" + typ,
		Type:        typ,
		Route:       rec.Internal.Route,
		CreatedAt:   now,
		Record:      rec.Clone(),
		NextAttempt: now,
	}
	var muts []mutation
	prev, err := getEvent(tx, ev.ID)
	switch {
	case err == nil:
		muts = append(muts, eventIndexMutation(prev, true))
	case !errors.Is(err, storage.ErrNotFound):
		return nil, err
	}
	put, err := eventPutMutations(ev)
	if err != nil {
		return nil, err
	}
	return append(muts, put...), nil
}

// eventPutMutations store ev and its index entry.
func eventPutMutations(ev *storage.Event) ([]mutation, error) {
	val, err := encodeEvent(ev)
	if err != nil {
		return nil, err
	}
	return []mutation{
		{bucket: bucketEvents, key: []byte(ev.ID), value: val},
		eventIndexMutation(ev, false),
	}, nil
}

// eventIndexMutation adds or removes ev's entry in the index its state
// belongs to: due while it waits for delivery, parked once parked.
func eventIndexMutation(ev *storage.Event, del bool) mutation {
	m := mutation{bucket: bucketEventsDue, key: routeTimeKey(ev.Route, ev.NextAttempt, ev.ID), del: del}
	if ev.Parked {
		m.bucket, m.key = bucketEventsParked, routeTimeKey(ev.Route, ev.CreatedAt, ev.ID)
	}
	if !del {
		m.value = []byte{}
	}
	return m
}

// getEvent decodes the event with id; the result shares no memory with tx.
func getEvent(tx *bolt.Tx, id string) (*storage.Event, error) {
	v := tx.Bucket(bucketEvents).Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("event %s: %w", id, storage.ErrNotFound)
	}
	ev, err := decodeEvent(v)
	if err != nil {
		return nil, fmt.Errorf("event %s: %w", id, err)
	}
	return ev, nil
}

// changeEvent applies fn to event id in a write and stores the result with
// its index entry; a missing event is storage.ErrNotFound.
func (l *Ledger) changeEvent(ctx context.Context, id string, fn func(ev *storage.Event)) error {
	_, err := l.write(ctx, func(tx *bolt.Tx) ([]mutation, *storage.Record, error) {
		ev, err := getEvent(tx, id)
		if err != nil {
			return nil, nil, err
		}
		muts := []mutation{eventIndexMutation(ev, true)}
		fn(ev)
		put, err := eventPutMutations(ev)
		if err != nil {
			return nil, nil, err
		}
		return append(muts, put...), nil, nil
	})
	return err
}

// AckEvent removes a delivered event; a missing one is not an error.
func (l *Ledger) AckEvent(ctx context.Context, id string) error {
	_, err := l.write(ctx, func(tx *bolt.Tx) ([]mutation, *storage.Record, error) {
		ev, err := getEvent(tx, id)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, nil, nil
		}
		if err != nil {
			return nil, nil, err
		}
		return []mutation{{bucket: bucketEvents, key: []byte(id), del: true}, eventIndexMutation(ev, true)}, nil, nil
	})
	return err
}

// RetryEvent records a failed attempt: Attempts+1, LastError, and either
// NextAttempt = next or, when park is set, parks the event. A missing event
// (acknowledged meanwhile) is storage.ErrNotFound.
func (l *Ledger) RetryEvent(ctx context.Context, id string, next time.Time, lastErr string, park bool) error {
	return l.changeEvent(ctx, id, func(ev *storage.Event) {
		ev.Attempts++
		ev.LastError = lastErr
		ev.Parked = park
		if !park {
			ev.NextAttempt = next
		}
	})
}

// ReplayEvent unparks an event for immediate delivery with a fresh count of
// attempts; LastError is kept. A missing event is storage.ErrNotFound.
func (l *Ledger) ReplayEvent(ctx context.Context, id string) error {
	now := time.Now().UTC()
	return l.changeEvent(ctx, id, func(ev *storage.Event) {
		ev.Parked = false
		ev.Attempts = 0
		ev.NextAttempt = now
	})
}

// DueEvents lists up to limit unparked events of route whose NextAttempt is
// not after t, oldest first.
func (l *Ledger) DueEvents(ctx context.Context, route string, t time.Time, limit int) ([]*storage.Event, error) {
	var out []*storage.Event
	err := l.view(ctx, func(tx *bolt.Tx) error {
		if limit <= 0 {
			return nil
		}
		bound, prefix := dueNanos(t), routePrefix(route)
		c := tx.Bucket(bucketEventsDue).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, _ = c.Next() {
			_, nanos, id, ok := splitRouteTimeKey(k)
			if !ok || nanos > bound {
				break
			}
			ev, err := getEvent(tx, id)
			if err != nil {
				return fmt.Errorf("event index of route %q: %w", route, err)
			}
			// The check guards against a clamped time equal to the bound.
			if !ev.Parked && !ev.NextAttempt.After(t) {
				out = append(out, ev)
			}
		}
		return nil
	})
	return out, err
}

// ParkedEvents lists up to limit parked events of route, oldest first, or
// of every route ("") ordered by route, then age.
func (l *Ledger) ParkedEvents(ctx context.Context, route string, limit int) ([]*storage.Event, error) {
	var out []*storage.Event
	err := l.view(ctx, func(tx *bolt.Tx) error {
		if limit <= 0 {
			return nil
		}
		c := tx.Bucket(bucketEventsParked).Cursor()
		var prefix []byte
		k, _ := c.First()
		if route != "" {
			prefix = routePrefix(route)
			k, _ = c.Seek(prefix)
		}
		for ; k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, _ = c.Next() {
			_, _, id, ok := splitRouteTimeKey(k)
			if !ok {
				return fmt.Errorf("malformed parked index key %x", k)
			}
			ev, err := getEvent(tx, id)
			if err != nil {
				return fmt.Errorf("parked index: %w", err)
			}
			out = append(out, ev)
		}
		return nil
	})
	return out, err
}
