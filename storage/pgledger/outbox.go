package pgledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/caddyupload/caddyupload/storage"
)

// Event times (CreatedAt, NextAttempt) are kept to the microsecond: an
// event's NextAttempt is what the column holds, so DueEvents compares
// exactly.

func eventNotFound(id string) error {
	return fmt.Errorf("event %s: %w", id, storage.ErrNotFound)
}

// scanEvents reads rows of eventCols.
func scanEvents(rows pgx.Rows) ([]*storage.Event, error) {
	var out []*storage.Event
	var (
		ev   storage.Event
		data []byte
	)
	_, err := pgx.ForEachRow(rows, []any{&ev.ID, &ev.Type, &ev.Route, &ev.CreatedAt, &ev.NextAttempt, &ev.Attempts, &ev.LastError, &ev.Parked, &data},
		func() error {
			rec, err := decodeRecord(data)
			if err != nil {
				return fmt.Errorf("event %s: %w", ev.ID, err)
			}
			e := ev
			e.CreatedAt, e.NextAttempt = e.CreatedAt.UTC(), e.NextAttempt.UTC()
			e.Record = rec
			out = append(out, &e)
			return nil
		})
	return out, err
}

// DueEvents lists up to limit unparked events of route ("" = every route)
// whose NextAttempt is not after t, oldest NextAttempt first (ties by id).
// An event waits while an earlier event of its record (smaller CreatedAt,
// ties by id) is still in the outbox, due later or parked.
func (l *Ledger) DueEvents(ctx context.Context, route string, t time.Time, limit int) ([]*storage.Event, error) {
	if err := l.begin(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 || !validText(route) {
		return nil, nil
	}
	query, args := l.q.dueEvents, []any{route, colTime(t), limit}
	if route == "" {
		query, args = l.q.dueEventsAll, []any{colTime(t), limit}
	}
	var out []*storage.Event
	err := l.retry(ctx, func() (bool, error) {
		rows, err := l.pool.Query(ctx, query, args...)
		if err != nil {
			return true, err
		}
		out, err = scanEvents(rows)
		return true, err
	})
	if err != nil {
		return nil, l.dbErr(ctx, err)
	}
	return out, nil
}

// ParkedEvents lists parked events of route ("" = every route), oldest
// CreatedAt first (ties by id), a page of up to limit at a time: after is
// the cursor a previous call returned ("" for the first page); next is ""
// after the last page.
func (l *Ledger) ParkedEvents(ctx context.Context, route, after string, limit int) ([]*storage.Event, string, error) {
	if err := l.begin(ctx); err != nil {
		return nil, "", err
	}
	if limit <= 0 || !validText(route) {
		return nil, "", nil
	}
	var (
		where strings.Builder
		args  []any
	)
	where.WriteString(l.q.parked)
	if route != "" {
		args = append(args, route)
		fmt.Fprintf(&where, " AND route = $%d", len(args))
	}
	if after != "" {
		at, id, err := decodeCursor(after)
		if err != nil {
			return nil, "", fmt.Errorf("%w: %w", storage.ErrBadCursor, err)
		}
		args = append(args, at, id)
		fmt.Fprintf(&where, " AND (created_at, id) > ($%d, $%d)", len(args)-1, len(args))
	}
	// One more than asked tells whether another page follows.
	args = append(args, limit+1)
	fmt.Fprintf(&where, " ORDER BY created_at, id LIMIT $%d", len(args))

	var evs []*storage.Event
	err := l.retry(ctx, func() (bool, error) {
		rows, err := l.pool.Query(ctx, where.String(), args...)
		if err != nil {
			return true, err
		}
		evs, err = scanEvents(rows)
		return true, err
	})
	if err != nil {
		return nil, "", l.dbErr(ctx, err)
	}
	next := ""
	if len(evs) > limit {
		evs = evs[:limit]
		last := evs[limit-1]
		next = encodeCursor(last.CreatedAt, last.ID)
	}
	return evs, next, nil
}

// changeEvent runs one statement on event id; no row changed is
// storage.ErrNotFound unless missingOK. Only an idempotent statement is
// tried again on a lost connection: RetryEvent's would count an attempt
// twice.
func (l *Ledger) changeEvent(ctx context.Context, id string, missingOK, idempotent bool, query string, args ...any) error {
	if err := l.begin(ctx); err != nil {
		return err
	}
	if !validText(id) {
		if missingOK {
			return nil
		}
		return eventNotFound(id)
	}
	var tag pgconn.CommandTag
	err := l.retry(ctx, func() (bool, error) {
		var err error
		tag, err = l.pool.Exec(ctx, query, append([]any{id}, args...)...)
		return idempotent, err
	})
	if err != nil {
		return l.dbErr(ctx, err)
	}
	if tag.RowsAffected() == 0 {
		if missingOK {
			return nil
		}
		return eventNotFound(id)
	}
	l.writes.Add(1)
	l.commits.Add(1)
	return nil
}

// AckEvent removes a delivered (or dropped) event; a missing one is not an
// error.
func (l *Ledger) AckEvent(ctx context.Context, id string) error {
	return l.changeEvent(ctx, id, true, true, l.q.deleteEvent)
}

// RetryEvent records a failed attempt: Attempts+1, LastError, and either
// NextAttempt = next or, when park is set, parks the event. A missing event
// (acknowledged meanwhile) is storage.ErrNotFound. LastError is kept as
// valid UTF-8 without zero bytes, which a text column requires.
func (l *Ledger) RetryEvent(ctx context.Context, id string, next time.Time, lastErr string, park bool) error {
	lastErr = strings.ReplaceAll(strings.ToValidUTF8(lastErr, "\uFFFD"), "\x00", "\uFFFD")
	return l.changeEvent(ctx, id, false, false, l.q.retryEvent, lastErr, park, colTime(next))
}

// ReplayEvent unparks an event for immediate delivery with a fresh count of
// attempts; LastError is kept. A missing event is storage.ErrNotFound.
func (l *Ledger) ReplayEvent(ctx context.Context, id string) error {
	return l.changeEvent(ctx, id, false, true, l.q.replayEvent, eventTime())
}

// RerouteEvent hands an event, due or parked, to route: Event.Route and
// Event.Record.Internal.Route become route, it is unparked and due now,
// attempts from zero, LastError kept. storage.ErrNotFound if missing.
func (l *Ledger) RerouteEvent(ctx context.Context, id, route string) error {
	if err := l.begin(ctx); err != nil {
		return err
	}
	if !validText(id) {
		return eventNotFound(id)
	}
	if !validText(route) || len(route)+len(id) > maxIndexedText {
		return fmt.Errorf("reroute of event %s: route too long, or not valid UTF-8 without zero bytes", id)
	}
	err := l.retry(ctx, func() (bool, error) {
		tx, err := l.pool.Begin(ctx)
		if err != nil {
			return true, err
		}
		defer tx.Rollback(ctx)
		var data []byte
		err = tx.QueryRow(ctx, l.q.lockEvent, id).Scan(&data)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, finalError{eventNotFound(id)}
		}
		if err != nil {
			return true, err
		}
		rec, err := decodeRecord(data)
		if err != nil {
			return false, fmt.Errorf("event %s: %w", id, err)
		}
		rec.Internal.Route = route
		if data, err = encodeRecord(rec); err != nil {
			return false, err
		}
		if _, err := tx.Exec(ctx, l.q.rerouteEvent, id, route, data, eventTime()); err != nil {
			return false, err
		}
		// Lost while committing, it may have happened or not: an error,
		// and the operator asks again (rerouting twice is harmless).
		return false, tx.Commit(ctx)
	})
	return l.wrote(ctx, err)
}
