package storage

import (
	"context"
	"time"
)

// Status is where an upload is in its life.
type Status string

const (
	StatusPending   Status = "pending"
	StatusConfirmed Status = "confirmed"
	StatusAborted   Status = "aborted"
	StatusExpired   Status = "expired"
	StatusRejected  Status = "rejected"
)

// Kinds of upload a record can be: how its bytes reach storage.
const (
	KindPut       = "PUT"       // one presigned PUT
	KindPost      = "POST"      // one POST policy form
	KindMultipart = "MULTIPART" // a multipart upload, parts signed on demand
)

// Record is one upload as the ledger keeps it. Fields tagged "-" in JSON
// answers are the module's own bookkeeping and never reach a client; the
// ledger stores all of them (see the bolt backend's encoding).
type Record struct {
	ID          string            `json:"id"`
	Key         string            `json:"key"`
	Status      Status            `json:"status"`
	Filename    string            `json:"filename"`
	Size        int64             `json:"size"`
	Type        string            `json:"type"`
	SHA256      string            `json:"sha256,omitempty"` // lowercase hex
	Metadata    map[string]string `json:"metadata,omitempty"`
	CreatedAt   time.Time         `json:"created_at"`
	ConfirmedAt *time.Time        `json:"confirmed_at,omitempty"`

	Internal RecordInternal `json:"-"`
}

// RecordInternal holds what only the module sees.
type RecordInternal struct {
	// Subject and Source own the record: every call by another subject,
	// or by the same subject name from another identity source (OIDC
	// issuer, Caddy authentication), is a 404. Source is empty on records
	// written before it existed.
	Subject string `json:"subject"`
	Source  string `json:"source,omitempty"`
	// Store is the ObjectStore.ID() the key was issued in; the sweeper of a
	// store only ever touches its own records.
	Store string `json:"store"`
	// Route names the upload route that created the record.
	Route string `json:"route,omitempty"`
	// Kind is how the bytes reach storage: KindPut, KindPost or
	// KindMultipart (stored as "method" by earlier versions, kept so).
	Kind string `json:"method"`
	// MinSize and MaxSize are the policy's limits when Size is not known
	// at creation (POST policy and Uppy multipart uploads); 0 otherwise.
	MinSize int64 `json:"min_size,omitempty"`
	MaxSize int64 `json:"max_size,omitempty"`
	// UploadID is the storage server's multipart upload id.
	UploadID  string `json:"upload_id,omitempty"`
	PartSize  int64  `json:"part_size,omitempty"`
	PartCount int32  `json:"part_count,omitempty"`
	// ExpiresAt is when a still-pending record is swept.
	ExpiresAt time.Time `json:"expires_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Recheck marks a closed (aborted or rejected) record whose object may
	// still be written through a URL that stays valid until ExpiresAt: the
	// sweeper deletes it again then.
	Recheck bool `json:"recheck,omitempty"`
	// Retire marks a record kept for a retention period: once nothing
	// else is due for it, the sweeper deletes the record itself (never a
	// confirmed upload's object) at ExpiresAt.
	Retire bool `json:"retire,omitempty"`
	// ETag is the stored object's ETag when the record was confirmed: a
	// download first checks that storage still holds that object.
	ETag string `json:"etag,omitempty"`
	// Reason says why a record was rejected.
	Reason string `json:"reason,omitempty"`
	// Notify asks the ledger to put an Event in its outbox whenever the
	// record's status changes to confirmed, expired, rejected or aborted.
	Notify bool `json:"notify,omitempty"`
}

// NeedsSweep reports whether the sweeper must act on r at ExpiresAt: a
// pending record expires then, a closed one with Recheck has its object
// deleted once more, a record with Retire is deleted.
func (r *Record) NeedsSweep() bool {
	return r.Status == StatusPending || r.Internal.Recheck && r.Status != StatusConfirmed || r.Internal.Retire
}

// Terminal reports whether r's upload has ended: confirmed, rejected,
// aborted or expired.
func (r *Record) Terminal() bool { return r.Status != StatusPending }

// ListQuery selects records for List. Empty fields match everything.
type ListQuery struct {
	Route   string
	Subject string
	Status  Status
	// Before keeps records created before it (zero: any age).
	Before time.Time
	// After is the cursor a previous List returned ("" for the first page).
	After string
	Limit int
}

// Clone returns a deep copy, so callers never share maps or pointers with
// the ledger's cache or another goroutine.
func (r *Record) Clone() *Record {
	c := *r
	if r.Metadata != nil {
		c.Metadata = make(map[string]string, len(r.Metadata))
		for k, v := range r.Metadata {
			c.Metadata[k] = v
		}
	}
	if r.ConfirmedAt != nil {
		t := *r.ConfirmedAt
		c.ConfirmedAt = &t
	}
	return &c
}

// Ledger stores upload records durably. Every write has reached stable
// storage when the call returns; that is what lets the module hand out a URL
// or answer 200 only after the matching record is safe.
type Ledger interface {
	// Create stores a new record; ErrConflict if its id or (store, key)
	// exists already.
	Create(ctx context.Context, rec *Record) error
	// Get returns a copy of the record, or ErrNotFound.
	Get(ctx context.Context, id string) (*Record, error)
	// GetByKey finds the record that issued key in store, or ErrNotFound.
	GetByKey(ctx context.Context, store, key string) (*Record, error)
	// Update applies fn to the current record atomically and stores the
	// result; an error from fn aborts the update and is returned as is.
	// It returns a copy of the stored record.
	Update(ctx context.Context, id string, fn func(*Record) error) (*Record, error)
	// DueSweep lists up to limit records of store that need the sweeper
	// (Record.NeedsSweep) with Internal.ExpiresAt before t, oldest first.
	DueSweep(ctx context.Context, store string, t time.Time, limit int) ([]*Record, error)
	// Delete removes record id when check, run on the current record in
	// the same transaction, returns nil; its error is returned as is.
	// ErrNotFound if missing. The record's outbox events stay.
	Delete(ctx context.Context, id string, check func(*Record) error) error
	// List returns up to q.Limit records matching q in descending id order
	// (newest first: the module's ids are time-ordered), and the cursor of
	// the next page ("" after the last). It may scan every record: it
	// serves operators, not clients.
	List(ctx context.Context, q ListQuery) (recs []*Record, next string, err error)
	Close() error
}
