package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The stored form of a record, shared by every ledger, so that a record
// moves between them (caddy upload migrate) as it is.

// The first byte of a stored record says how the rest is encoded: JSON of
// RecordWire (encodingV1, written by earlier versions and still read), or
// the binary layout of codec_v2.go, which costs a fraction of JSON to write
// and read on every create and every call that loads a record.
const (
	encodingV1 byte = 1
	encodingV2 byte = 2
)

// RecordWire mirrors Record field for field, so that a conversion between
// the two stops compiling when Record gains a field. It differs only in its
// tags: Internal, hidden from clients, is stored. It is the JSON form of a
// record inside stored webhook events and of encodingV1. Convert pointers,
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

// EncodeRecord is rec as ledgers store it (encodingV2).
func EncodeRecord(rec *Record) ([]byte, error) {
	return appendRecordV2(make([]byte, 0, recordSizeHint(rec)), rec), nil
}

// DecodeRecord reads what EncodeRecord writes, and what it wrote before
// (encodingV1). The record shares no memory with b, so it stays valid after
// the transaction b came from has ended.
func DecodeRecord(b []byte) (*Record, error) {
	if len(b) == 0 {
		return nil, errors.New("empty record")
	}
	switch b[0] {
	case encodingV2:
		rec, err := decodeRecordV2(b[1:])
		if err != nil {
			return nil, fmt.Errorf("decoding record: %w", err)
		}
		return rec, nil
	case encodingV1:
		rec := new(Record)
		if err := json.Unmarshal(b[1:], (*RecordWire)(rec)); err != nil {
			return nil, fmt.Errorf("decoding record: %w", err)
		}
		return rec, nil
	}
	return nil, fmt.Errorf("unknown record encoding version %d", b[0])
}
