package pgledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/caddyupload/caddyupload/storage"
)

// Size bounds. A btree index entry must fit in a third of a page (about
// 2.7 KB), and the id, store, key and route are indexed: the bounds keep
// every index entry below that, with room for the time and the id. An S3
// key is at most 1024 bytes.
const (
	maxIDLen       = 200
	maxIndexedText = 2000
	// maxEventSuffix bounds what an event id adds to the record id (":"
	// and the longest event type).
	maxEventSuffix = 32
)

// finalError carries an error out of a retried attempt to be returned as
// it is: a domain error (not found, conflict) or the update function's own.
type finalError struct{ err error }

func (e finalError) Error() string { return e.err.Error() }

// checkRecord rejects what the tables cannot hold, with the bbolt ledger's
// messages where the cause is the same.
func checkRecord(rec *storage.Record) error {
	in := &rec.Internal
	switch {
	case rec.ID == "":
		return errors.New("record without id")
	case rec.Key == "":
		return fmt.Errorf("record %s without key", rec.ID)
	case in.Store == "":
		return fmt.Errorf("record %s without store", rec.ID)
	case containsZero(in.Store):
		return fmt.Errorf("record %s: store contains a zero byte", rec.ID)
	case len(in.Store)+len(rec.Key) > maxIndexedText || len(rec.ID) > maxIDLen:
		return fmt.Errorf("record %s: id, store or key too long", rec.ID)
	case containsZero(in.Route):
		return fmt.Errorf("record %s: route contains a zero byte", rec.ID)
	case in.Notify && len(in.Route)+len(rec.ID)+maxEventSuffix > maxIndexedText:
		return fmt.Errorf("record %s: id or route too long for an event", rec.ID)
	}
	for _, f := range []struct{ name, v string }{
		{"id", rec.ID}, {"key", rec.Key}, {"store", in.Store}, {"status", string(rec.Status)},
		{"route", in.Route}, {"subject", in.Subject}, {"source", in.Source},
	} {
		if !validText(f.v) {
			return fmt.Errorf("record %s: %s contains a zero byte or is not valid UTF-8", rec.ID, f.name)
		}
	}
	return nil
}

// eventArgs are the values of upsertEvent for the event that rec's change
// from status old produces, or nil when it produces none: rec does not ask
// for events, kept its status, or reached one without an event.
func eventArgs(old storage.Status, rec *storage.Record, data []byte) []any {
	typ := storage.EventFor(rec.Status)
	if !rec.Internal.Notify || rec.Status == old || typ == "" {
		return nil
	}
	return []any{rec.ID + ":" + typ, rec.ID, typ, rec.Internal.Route, eventTime(), data}
}

// clock, when set, gives the times written into events (tests); nil is the
// database's clock (clock_timestamp()), one clock for every instance.
var clock func() time.Time

// eventTime is the time argument of the event statements: NULL for the
// database's clock.
func eventTime() any {
	if clock == nil {
		return nil
	}
	return colTime(clock())
}

// Create stores a new record; storage.ErrConflict if its id or (store, key)
// exists already. rec is not retained.
func (l *Ledger) Create(ctx context.Context, rec *storage.Record) error {
	return l.create(ctx, rec, nil)
}

// create is Create, within lim when it is set (CreateWithin).
func (l *Ledger) create(ctx context.Context, rec *storage.Record, lim *storage.Limits) error {
	if err := l.begin(ctx); err != nil {
		return err
	}
	if err := checkRecord(rec); err != nil {
		return err
	}
	data, err := encodeRecord(rec)
	if err != nil {
		return err
	}
	args := recordArgs(rec, data)
	// A record created in a final status reports it at once.
	ev := eventArgs(storage.StatusPending, rec, data)
	// A pending create is added to its usage in SQL; a quota check, or a
	// record created in another status, needs the usage row locked and
	// read (createTx).
	if ev == nil && lim == nil && rec.Status == storage.StatusPending {
		if l.group != nil {
			return l.group.create(ctx, rec, args)
		}
		return l.createPending(ctx, rec, data, args)
	}
	return l.createTx(ctx, rec, data, args, ev, lim)
}

// storedAs reports whether record id is stored with exactly data: the
// create whose answer was lost with its connection did commit.
func (l *Ledger) storedAs(ctx context.Context, id string, data []byte) bool {
	var got []byte
	err := l.pool.QueryRow(ctx, l.q.getRecord, id).Scan(&got)
	return err == nil && bytes.Equal(got, data)
}

// conflictError names what was taken, from the constraint PostgreSQL
// reports.
func conflictError(rec *storage.Record, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.ConstraintName == "records_pkey" {
		return fmt.Errorf("record %s exists: %w", rec.ID, storage.ErrConflict)
	}
	return fmt.Errorf("key %q in store %q is taken: %w", rec.Key, rec.Internal.Store, storage.ErrConflict)
}

func notFound(id string) error {
	return fmt.Errorf("record %s: %w", id, storage.ErrNotFound)
}

// Update applies fn to the record, locked (SELECT ... FOR UPDATE) in a
// transaction, and stores the result with its event, if the change makes
// one, in the same transaction. Concurrent updates of one record, from this
// process or another, run one after the other, each on the record the one
// before stored. An error from fn aborts the update and is returned as is,
// and a panic in fn goes up to the caller (the transaction is rolled back).
// fn must not change the id and must not call the ledger (its row lock
// would make that wait for itself). fn runs once: a connection lost before
// it ran is tried again, one lost after it is an error.
func (l *Ledger) Update(ctx context.Context, id string, fn func(*storage.Record) error) (*storage.Record, error) {
	if err := l.begin(ctx); err != nil {
		return nil, err
	}
	if !validText(id) {
		return nil, notFound(id) // no record can have that id
	}
	var out *storage.Record
	err := l.retry(ctx, func() (bool, error) {
		b := &pgx.Batch{}
		b.BeginTx(pgx.TxOptions{})
		b.Queue(l.q.lockRecord, id)
		br := l.pool.SendBatch(ctx, b)
		tx := br.Tx()
		defer tx.Rollback(ctx)
		_, err := br.Exec()
		var data []byte
		if err == nil {
			err = br.QueryRow().Scan(&data)
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if errors.Is(err, pgx.ErrNoRows) {
			return false, finalError{notFound(id)}
		}
		if err != nil {
			return true, err // nothing was written, fn has not run
		}
		rec, err := decodeRecord(data)
		if err != nil {
			return false, fmt.Errorf("record %s: %w", id, err)
		}
		old := rec.Clone()
		if err := fn(rec); err != nil {
			return false, finalError{err}
		}
		if rec.ID != id {
			return false, finalError{fmt.Errorf("update of record %s changed its id to %q", id, rec.ID)}
		}
		if err := checkRecord(rec); err != nil {
			return false, finalError{err}
		}
		data, err = encodeRecord(rec)
		if err != nil {
			return false, finalError{err}
		}
		wb := &pgx.Batch{}
		wb.Queue(l.q.updateRecord, recordArgs(rec, data)...)
		if ev := eventArgs(old.Status, rec, data); ev != nil {
			wb.Queue(l.q.upsertEvent, ev...)
		}
		if err := l.queueUsage(ctx, tx, wb, storage.QuotaKey{}, storage.UsageChanges(old, rec), nil); err != nil {
			return false, err
		}
		err = tx.SendBatch(ctx, wb).Close()
		if err == nil {
			err = tx.Commit(ctx)
		}
		if isUniqueViolation(err) {
			return false, finalError{conflictError(rec, err)}
		}
		if err != nil {
			return false, err
		}
		// fn may have kept a pointer to rec; the caller gets its own copy.
		out = rec.Clone()
		return false, nil
	})
	if fe, ok := err.(finalError); ok {
		return nil, fe.err
	}
	if err != nil {
		return nil, l.dbErr(ctx, err)
	}
	l.writes.Add(1)
	l.commits.Add(1)
	return out, nil
}
