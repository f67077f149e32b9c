package pgledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddyupload/caddyupload/storage"
)

// Reads are tried again on a lost connection: they change nothing.

// Get returns a copy of the record with id, or storage.ErrNotFound.
func (l *Ledger) Get(ctx context.Context, id string) (*storage.Record, error) {
	if err := l.begin(ctx); err != nil {
		return nil, err
	}
	if !validText(id) {
		return nil, notFound(id)
	}
	return l.getOne(ctx, notFound(id), l.q.getRecord, id)
}

// GetByKey returns a copy of the record that issued key in store, or
// storage.ErrNotFound.
func (l *Ledger) GetByKey(ctx context.Context, store, key string) (*storage.Record, error) {
	if err := l.begin(ctx); err != nil {
		return nil, err
	}
	missing := fmt.Errorf("key %q in store %q: %w", key, store, storage.ErrNotFound)
	if !validText(store) || !validText(key) {
		return nil, missing
	}
	return l.getOne(ctx, missing, l.q.getRecordByKey, store, key)
}

func (l *Ledger) getOne(ctx context.Context, missing error, query string, args ...any) (*storage.Record, error) {
	var data []byte
	err := l.retry(ctx, func() (bool, error) {
		return true, l.pool.QueryRow(ctx, query, args...).Scan(&data)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, missing
	}
	if err != nil {
		return nil, l.dbErr(ctx, err)
	}
	rec, err := decodeRecord(data)
	if err != nil {
		return nil, l.dbErr(ctx, err)
	}
	return rec, nil
}

// DueSweep lists up to limit records of store that need the sweeper with
// Internal.ExpiresAt before t, oldest first.
func (l *Ledger) DueSweep(ctx context.Context, store string, t time.Time, limit int) ([]*storage.Record, error) {
	if err := l.begin(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 || !validText(store) {
		return nil, nil
	}
	// The column holds ExpiresAt rounded down to the microsecond: rows of
	// t's own microsecond may expire at or after t, which the record's
	// exact time decides. They sort last, so the limit never hides a
	// record that is due.
	var out []*storage.Record
	err := l.retry(ctx, func() (bool, error) {
		rows, err := l.pool.Query(ctx, l.q.dueSweep, store, colTime(t), limit)
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
			if rec.NeedsSweep() && rec.Internal.ExpiresAt.Before(t) {
				out = append(out, rec)
			}
			return nil
		})
		return true, err
	})
	if err != nil {
		return nil, l.dbErr(ctx, err)
	}
	return out, nil
}
