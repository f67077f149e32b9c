package pgledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/caddyupload/caddyupload/storage"
)

// Delete removes record id when check, run on the locked current record,
// allows it; its outbox events stay.
func (l *Ledger) Delete(ctx context.Context, id string, check func(*storage.Record) error) error {
	if err := l.begin(ctx); err != nil {
		return err
	}
	if !validText(id) {
		return notFound(id)
	}
	err := l.retry(ctx, func() (bool, error) {
		tx, err := l.pool.Begin(ctx)
		if err != nil {
			return true, err
		}
		defer tx.Rollback(ctx)
		var data []byte
		if err := tx.QueryRow(ctx, l.q.lockRecord, id).Scan(&data); errors.Is(err, pgx.ErrNoRows) {
			return false, finalError{notFound(id)}
		} else if err != nil {
			return true, err
		}
		rec, err := decodeRecord(data)
		if err != nil {
			return false, fmt.Errorf("record %s: %w", id, err)
		}
		if err := check(rec); err != nil {
			return false, finalError{err}
		}
		b := &pgx.Batch{}
		b.Queue(l.q.deleteRecord, id)
		if err := l.queueUsage(ctx, tx, b, storage.QuotaKey{}, storage.UsageChanges(rec, nil), nil); err != nil {
			return false, err
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return false, err
		}
		// Deleting twice deletes once: a commit whose answer was lost can
		// be tried again.
		return true, tx.Commit(ctx)
	})
	return l.wrote(ctx, err)
}

// List pages through the records matching q by descending id.
func (l *Ledger) List(ctx context.Context, q storage.ListQuery) ([]*storage.Record, string, error) {
	if err := l.begin(ctx); err != nil {
		return nil, "", err
	}
	if q.Limit <= 0 {
		return nil, "", nil
	}
	for _, s := range []string{q.Route, q.Subject, string(q.Status), q.After} {
		if !validText(s) {
			return nil, "", nil // no record can match
		}
	}
	var before any
	if !q.Before.IsZero() {
		before = colTime(q.Before)
	}
	var out []*storage.Record
	err := l.retry(ctx, func() (bool, error) {
		rows, err := l.pool.Query(ctx, l.q.listRecords, q.Route, q.Subject, string(q.Status), before, q.After, q.Limit+1)
		if err != nil {
			return true, err
		}
		out = out[:0]
		var data []byte
		_, err = pgx.ForEachRow(rows, []any{&data}, func() error {
			rec, err := decodeRecord(data)
			if err != nil {
				return err
			}
			out = append(out, rec)
			return nil
		})
		return true, err
	})
	if err != nil {
		return nil, "", l.dbErr(ctx, err)
	}
	next := ""
	if len(out) > q.Limit {
		out = out[:q.Limit]
		next = out[len(out)-1].ID
	}
	return out, next, nil
}
