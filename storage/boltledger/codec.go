package boltledger

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// Records are stored as storage.EncodeRecord writes them.
var (
	encodeRecord = storage.EncodeRecord
	decodeRecord = storage.DecodeRecord
)

// wireRecord is the stored form of a record inside an event.
type wireRecord = storage.RecordWire

// eventEncodingV1 is the first byte of every stored event.
const eventEncodingV1 byte = 1

// keyIndexKey is the key of the keys bucket: store, a zero byte, then the
// object key. Stores never contain a zero byte (checked on write), so the
// split is unambiguous.
func keyIndexKey(store, key string) []byte {
	k := make([]byte, 0, len(store)+1+len(key))
	k = append(k, store...)
	k = append(k, 0)
	return append(k, key...)
}

// dueKey is the key inside a store's due bucket: the expiry as big-endian
// nanoseconds, so that cursor order is time order, followed by the id.
func dueKey(expires time.Time, id string) []byte {
	k := make([]byte, 8, 8+len(id))
	binary.BigEndian.PutUint64(k, dueNanos(expires))
	return append(k, id...)
}

var (
	minNanoTime = time.Unix(0, 0)
	maxNanoTime = time.Unix(0, math.MaxInt64)
)

// dueNanos maps a time onto the index's uint64 range. Times before 1970
// (including the zero time) sort first and times past 2262 last; readers
// compare the record's own ExpiresAt, so the clamp never changes an answer.
func dueNanos(t time.Time) uint64 {
	switch {
	case t.Before(minNanoTime):
		return 0
	case t.After(maxNanoTime):
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}

// wireEvent is the stored form of an event. Its Record field hides the
// embedded Event's (the shallower field wins in encoding/json) so that the
// record is stored with its Internal part; every other Event field is
// stored as Event declares it.
type wireEvent struct {
	storage.Event
	Record *wireRecord `json:"record"`
}

func encodeEvent(ev *storage.Event) ([]byte, error) {
	w := &wireEvent{Event: *ev, Record: (*wireRecord)(ev.Record)}
	w.Event.Record = nil
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("encoding event %s: %w", ev.ID, err)
	}
	out := make([]byte, 1+len(b))
	out[0] = eventEncodingV1
	copy(out[1:], b)
	return out, nil
}

// decodeEvent returns an event that shares no memory with b.
func decodeEvent(b []byte) (*storage.Event, error) {
	if len(b) == 0 {
		return nil, errors.New("empty event")
	}
	if b[0] != eventEncodingV1 {
		return nil, fmt.Errorf("unknown event encoding version %d", b[0])
	}
	w := new(wireEvent)
	if err := json.Unmarshal(b[1:], w); err != nil {
		return nil, fmt.Errorf("decoding event: %w", err)
	}
	ev := &w.Event
	ev.Record = (*storage.Record)(w.Record)
	return ev, nil
}

// routeTimeKey is the key of the event indexes: the route, a zero byte
// (routes of notifying records never contain one, checked on write), the
// time as big-endian nanoseconds and the event id. Cursor order within a
// route is time order.
func routeTimeKey(route string, t time.Time, id string) []byte {
	k := make([]byte, 0, len(route)+1+8+len(id))
	k = append(k, route...)
	k = append(k, 0)
	k = binary.BigEndian.AppendUint64(k, dueNanos(t))
	return append(k, id...)
}

// routePrefix is the common start of a route's index keys.
func routePrefix(route string) []byte {
	return append([]byte(route), 0)
}

// splitRouteTimeKey takes an index key apart.
func splitRouteTimeKey(k []byte) (route string, nanos uint64, id string, ok bool) {
	i := bytes.IndexByte(k, 0)
	if i < 0 || len(k) < i+1+8 {
		return "", 0, "", false
	}
	return string(k[:i]), binary.BigEndian.Uint64(k[i+1:]), string(k[i+1+8:]), true
}
