package boltledger

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/caddyupload/caddyupload/storage"
	bolt "go.etcd.io/bbolt"
)

// maxEventSuffix bounds what an event id adds to the record id (":" and
// the longest event type), for the key size check of checkRecord.
const maxEventSuffix = 32

// clock is the time written into events: when they happened and when they
// are due. Tests set it to give events equal times.
var clock = time.Now

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
	now := clock().UTC()
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
	now := clock().UTC()
	return l.changeEvent(ctx, id, func(ev *storage.Event) {
		ev.Parked = false
		ev.Attempts = 0
		ev.NextAttempt = now
	})
}

// RerouteEvent hands an event, due or parked, to route: Event.Route and
// the route of its record copy become route, and it is due now with a fresh
// count of attempts; LastError is kept. A missing event is
// storage.ErrNotFound.
func (l *Ledger) RerouteEvent(ctx context.Context, id, route string) error {
	now := clock().UTC()
	_, err := l.write(ctx, func(tx *bolt.Tx) ([]mutation, *storage.Record, error) {
		ev, err := getEvent(tx, id)
		if err != nil {
			return nil, nil, err
		}
		// Checked here, before anything is written: a failing Put would
		// spoil the transaction the write shares with others.
		if err := checkEventRoute(route, id); err != nil {
			return nil, nil, err
		}
		muts := []mutation{eventIndexMutation(ev, true)}
		ev.Route = route
		ev.Record.Internal.Route = route
		ev.Parked = false
		ev.Attempts = 0
		ev.NextAttempt = now
		put, err := eventPutMutations(ev)
		if err != nil {
			return nil, nil, err
		}
		return append(muts, put...), nil, nil
	})
	return err
}

// checkEventRoute rejects a route that an index key of event id cannot hold.
func checkEventRoute(route, id string) error {
	switch {
	case bytes.IndexByte([]byte(route), 0) >= 0:
		return fmt.Errorf("event %s: route contains a zero byte", id)
	case len(route)+1+8+len(id) > bolt.MaxKeySize:
		return fmt.Errorf("event %s: route too long", id)
	}
	return nil
}

// DueEvents lists up to limit unparked events of route ("" = every route)
// whose NextAttempt is not after t, oldest NextAttempt first, leaving out
// those that wait for an earlier event of their record.
func (l *Ledger) DueEvents(ctx context.Context, route string, t time.Time, limit int) ([]*storage.Event, error) {
	var out []*storage.Event
	err := l.view(ctx, func(tx *bolt.Tx) error {
		if limit <= 0 {
			return nil
		}
		bound := dueNanos(t)
		list := func(c *bolt.Cursor, prefix []byte) ([]indexedEvent, error) {
			var evs []indexedEvent
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(evs) < limit; k, _ = c.Next() {
				r, nanos, id, ok := splitRouteTimeKey(k)
				if !ok {
					return nil, fmt.Errorf("malformed due index key %x", k)
				}
				if nanos > bound {
					break
				}
				ev, err := getEvent(tx, id)
				if err != nil {
					return nil, fmt.Errorf("event index of route %q: %w", r, err)
				}
				// The time check guards against a clamped time equal to
				// the bound.
				if ev.Parked || ev.NextAttempt.After(t) {
					continue
				}
				waits, err := waitsForEarlier(tx, ev)
				if err != nil {
					return nil, err
				}
				if !waits {
					evs = append(evs, indexedEvent{ev, nanos, id})
				}
			}
			return evs, nil
		}
		evs, err := eachRoute(tx.Bucket(bucketEventsDue).Cursor(), route, limit, list)
		out = events(evs)
		return err
	})
	return out, err
}

// waitsForEarlier reports whether an earlier event of ev's record (smaller
// CreatedAt, ties by id) is still in the outbox. A record's events are
// stored under its id, a colon and the event type.
func waitsForEarlier(tx *bolt.Tx, ev *storage.Event) (bool, error) {
	if ev.Record == nil {
		return false, nil
	}
	rid := ev.Record.ID
	prefix := []byte(rid + ":")
	c := tx.Bucket(bucketEvents).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if string(k) == ev.ID {
			continue
		}
		other, err := decodeEvent(v)
		if err != nil {
			return false, fmt.Errorf("event %s: %w", k, err)
		}
		// Another record whose id extends this one's with a colon.
		if other.Record == nil || other.Record.ID != rid {
			continue
		}
		if c := other.CreatedAt.Compare(ev.CreatedAt); c < 0 || (c == 0 && other.ID < ev.ID) {
			return true, nil
		}
	}
	return false, nil
}

// ParkedEvents lists up to limit parked events of route ("" = every route),
// oldest CreatedAt first (ties by id), from the cursor after on; next is
// the cursor of the following page, or "" after the last.
func (l *Ledger) ParkedEvents(ctx context.Context, route, after string, limit int) ([]*storage.Event, string, error) {
	var (
		out  []*storage.Event
		next string
	)
	from, err := decodeCursor(after)
	if err != nil {
		return nil, "", err
	}
	err = l.view(ctx, func(tx *bolt.Tx) error {
		if limit <= 0 {
			return nil
		}
		// One more than a page tells whether another page follows.
		want := limit + 1
		list := func(c *bolt.Cursor, prefix []byte) ([]indexedEvent, error) {
			var evs []indexedEvent
			start := prefix
			if from != nil {
				start = append(prefix[:len(prefix):len(prefix)], from.key()...)
			}
			for k, _ := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix) && len(evs) < want; k, _ = c.Next() {
				r, nanos, id, ok := splitRouteTimeKey(k)
				if !ok {
					return nil, fmt.Errorf("malformed parked index key %x", k)
				}
				if from != nil && nanos == from.nanos && id == from.id {
					continue
				}
				ev, err := getEvent(tx, id)
				if err != nil {
					return nil, fmt.Errorf("parked index of route %q: %w", r, err)
				}
				evs = append(evs, indexedEvent{ev, nanos, id})
			}
			return evs, nil
		}
		evs, err := eachRoute(tx.Bucket(bucketEventsParked).Cursor(), route, want, list)
		if err != nil {
			return err
		}
		if len(evs) > limit {
			evs = evs[:limit]
			last := evs[limit-1]
			next = (&cursor{last.nanos, last.id}).String()
		}
		out = events(evs)
		return nil
	})
	return out, next, err
}

// indexedEvent is an event with the time and id of its index key, the
// order of every listing.
type indexedEvent struct {
	ev    *storage.Event
	nanos uint64
	id    string
}

func (a indexedEvent) compare(b indexedEvent) int {
	if c := cmp.Compare(a.nanos, b.nanos); c != 0 {
		return c
	}
	return strings.Compare(a.id, b.id)
}

func events(evs []indexedEvent) []*storage.Event {
	out := make([]*storage.Event, len(evs))
	for i, e := range evs {
		out[i] = e.ev
	}
	return out
}

// eachRoute runs list on the index keys of route, or, for "", on those of
// every route in the index, merging the answers in time order and keeping
// the first limit. The indexes are kept by route first, for the
// dispatchers; the few listings of every route take the first limit of
// each route, which hold the first limit of all.
func eachRoute(c *bolt.Cursor, route string, limit int, list func(c *bolt.Cursor, prefix []byte) ([]indexedEvent, error)) ([]indexedEvent, error) {
	if route != "" {
		return list(c, routePrefix(route))
	}
	var all []indexedEvent
	for k, _ := c.First(); k != nil; {
		i := bytes.IndexByte(k, 0)
		if i < 0 {
			return nil, fmt.Errorf("malformed event index key %x", k)
		}
		r := string(k[:i])
		evs, err := list(c, routePrefix(r))
		if err != nil {
			return nil, err
		}
		all = append(all, evs...)
		// Routes contain no zero byte: every key of r sorts before r||0x01,
		// and every key of a later route after it.
		k, _ = c.Seek(append([]byte(r), 1))
	}
	slices.SortFunc(all, indexedEvent.compare)
	if len(all) > limit {
		all = all[:limit]
	}
	return all, nil
}

// cursor is the position of a page in an index: the time and id of the
// last event listed. Its text form is opaque to callers.
type cursor struct {
	nanos uint64
	id    string
}

func (c *cursor) key() []byte {
	return append(binary.BigEndian.AppendUint64(nil, c.nanos), c.id...)
}

func (c *cursor) String() string {
	return base64.RawURLEncoding.EncodeToString(c.key())
}

// decodeCursor parses a cursor ParkedEvents handed out; "" is none.
func decodeCursor(s string) (*cursor, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) <= 8 {
		return nil, fmt.Errorf("cursor %q: %w", s, storage.ErrBadCursor)
	}
	return &cursor{binary.BigEndian.Uint64(b), string(b[8:])}, nil
}
