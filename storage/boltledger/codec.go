package boltledger

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// encodingV1 is the first byte of every stored record: the encoding that
// follows it is JSON of wireRecord. A new version can be read alongside it.
const encodingV1 byte = 1

// wireRecord mirrors storage.Record field for field, so that a conversion
// between the two stops compiling when Record gains a field. It differs only
// in its tags: Internal, hidden from clients, is stored.
type wireRecord struct {
	ID          string                 `json:"id"`
	Key         string                 `json:"key"`
	Status      storage.Status         `json:"status"`
	Filename    string                 `json:"filename"`
	Size        int64                  `json:"size"`
	Type        string                 `json:"type"`
	SHA256      string                 `json:"sha256,omitempty"`
	Metadata    map[string]string      `json:"metadata,omitempty"`
	CreatedAt   time.Time              `json:"created_at"`
	ConfirmedAt *time.Time             `json:"confirmed_at,omitempty"`
	Internal    storage.RecordInternal `json:"internal"`
}

func encodeRecord(rec *storage.Record) ([]byte, error) {
	b, err := json.Marshal(wireRecord(*rec))
	if err != nil {
		return nil, fmt.Errorf("encoding record %s: %w", rec.ID, err)
	}
	out := make([]byte, 1+len(b))
	out[0] = encodingV1
	copy(out[1:], b)
	return out, nil
}

// decodeRecord returns a record that shares no memory with b, so it stays
// valid after the transaction that b came from has ended.
func decodeRecord(b []byte) (*storage.Record, error) {
	if len(b) == 0 {
		return nil, errors.New("empty record")
	}
	if b[0] != encodingV1 {
		return nil, fmt.Errorf("unknown record encoding version %d", b[0])
	}
	var w wireRecord
	if err := json.Unmarshal(b[1:], &w); err != nil {
		return nil, fmt.Errorf("decoding record: %w", err)
	}
	rec := storage.Record(w)
	return &rec, nil
}

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
