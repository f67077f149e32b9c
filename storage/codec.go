package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The stored form of a record, shared by every ledger, so that a record
// moves between them (caddy upload migrate) as it is.

// encodingV1 is the first byte of every stored record: JSON of RecordWire
// follows. A new version can be read alongside it.
const encodingV1 byte = 1

// RecordWire mirrors Record field for field, so that a conversion between
// the two stops compiling when Record gains a field. It differs only in its
// tags: Internal, hidden from clients, is stored. Convert pointers,
// (*RecordWire)(rec): that saves a copy and an allocation.
type RecordWire struct {
	ID          string            `json:"id"`
	Key         string            `json:"key"`
	Status      Status            `json:"status"`
	Filename    string            `json:"filename"`
	Size        int64             `json:"size"`
	Type        string            `json:"type"`
	SHA256      string            `json:"sha256,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	CreatedAt   time.Time         `json:"created_at"`
	ConfirmedAt *time.Time        `json:"confirmed_at,omitempty"`
	Internal    RecordInternal    `json:"internal"`
}

// EncodeRecord is rec as ledgers store it.
func EncodeRecord(rec *Record) ([]byte, error) {
	b, err := json.Marshal((*RecordWire)(rec))
	if err != nil {
		return nil, fmt.Errorf("encoding record %s: %w", rec.ID, err)
	}
	out := make([]byte, 1+len(b))
	out[0] = encodingV1
	copy(out[1:], b)
	return out, nil
}

// DecodeRecord reads what EncodeRecord wrote. The record shares no memory
// with b, so it stays valid after the transaction b came from has ended.
func DecodeRecord(b []byte) (*Record, error) {
	if len(b) == 0 {
		return nil, errors.New("empty record")
	}
	if b[0] != encodingV1 {
		return nil, fmt.Errorf("unknown record encoding version %d", b[0])
	}
	rec := new(Record)
	if err := json.Unmarshal(b[1:], (*RecordWire)(rec)); err != nil {
		return nil, fmt.Errorf("decoding record: %w", err)
	}
	return rec, nil
}
