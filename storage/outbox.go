package storage

import (
	"context"
	"errors"
	"time"
)

// Event types a record's status changes produce.
const (
	EventConfirmed = "upload.confirmed"
	EventExpired   = "upload.expired"
	EventRejected  = "upload.rejected"
	EventAborted   = "upload.aborted"
)

// EventFor is the event a change of a record to status produces, or "".
func EventFor(s Status) string {
	switch s {
	case StatusConfirmed:
		return EventConfirmed
	case StatusExpired:
		return EventExpired
	case StatusRejected:
		return EventRejected
	case StatusAborted:
		return EventAborted
	}
	return ""
}

// Event is one notification waiting in the outbox. A ledger writes it in
// the same transaction as the status change it reports, for records whose
// Internal.Notify is set, so that no confirmed upload goes unannounced.
type Event struct {
	// ID is stable across retries and restarts: receivers de-duplicate by
	// it. It is the record id and the event type.
	ID   string `json:"id"`
	Type string `json:"type"`
	// Route is the record's Internal.Route: the dispatcher of that route
	// delivers it.
	Route     string    `json:"route"`
	CreatedAt time.Time `json:"created_at"`
	// Record is the record as it was after the change.
	Record *Record `json:"record"`

	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"`
	LastError   string    `json:"last_error,omitempty"`
	// Parked events have used up their attempts; they wait for an operator
	// to replay them.
	Parked bool `json:"parked"`
}

// ErrBadCursor is matched (errors.Is) by the error of ParkedEvents given a
// cursor it did not hand out.
var ErrBadCursor = errors.New("invalid cursor")

// Outbox is the durable queue of events. Ledgers that support webhooks
// implement it beside Ledger.
type Outbox interface {
	// DueEvents lists up to limit unparked events of route ("" = every
	// route) whose NextAttempt is not after t, oldest NextAttempt first.
	// An event is not due while an earlier event of the same record
	// (Event.Record.ID; earlier = smaller CreatedAt, ties by ID) is still in
	// the outbox, due later or parked: one upload's events are delivered in
	// the order they happened.
	DueEvents(ctx context.Context, route string, t time.Time, limit int) ([]*Event, error)
	// AckEvent removes a delivered (or dropped) event; a missing one is not an error.
	AckEvent(ctx context.Context, id string) error
	// RetryEvent records a failed attempt: Attempts+1, LastError, and
	// either the next attempt time or, when park is set, parks the event.
	RetryEvent(ctx context.Context, id string, next time.Time, lastErr string, park bool) error
	// ParkedEvents lists parked events of route ("" = every route), oldest
	// CreatedAt first (ties by ID), a page at a time: after is the cursor a
	// previous call returned ("" for the first page); next is "" after the
	// last page. The cursor is opaque to callers.
	ParkedEvents(ctx context.Context, route, after string, limit int) (evs []*Event, next string, err error)
	// ReplayEvent unparks an event for immediate delivery, or ErrNotFound.
	// Its attempts count from zero again; LastError is kept.
	ReplayEvent(ctx context.Context, id string) error
	// RerouteEvent hands an event, due or parked, to route: Event.Route and
	// Event.Record.Internal.Route become route, it is unparked and due now,
	// attempts from zero, LastError kept. ErrNotFound if missing.
	RerouteEvent(ctx context.Context, id, route string) error
}
