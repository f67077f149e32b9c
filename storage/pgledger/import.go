package pgledger

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/caddyupload/caddyupload/storage"
)

// Import inserts records and events as they are, in one transaction;
// rows whose id exists stay as they are. Usage is not touched here: see
// RecountUsage.
func (l *Ledger) Import(ctx context.Context, recs []*storage.Record, evs []*storage.Event) error {
	if err := l.begin(ctx); err != nil {
		return err
	}
	b := &pgx.Batch{}
	for _, rec := range recs {
		if err := checkRecord(rec); err != nil {
			return err
		}
		data, err := encodeRecord(rec)
		if err != nil {
			return err
		}
		b.Queue(`INSERT INTO `+l.schema+`.records (`+recordCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
			ON CONFLICT (id) DO NOTHING`, recordArgs(rec, data)...)
	}
	for _, ev := range evs {
		if ev.Record == nil || !validText(ev.ID) || !validText(ev.Route) {
			return fmt.Errorf("event %q cannot be imported: no record or an invalid id or route", ev.ID)
		}
		data, err := encodeRecord(ev.Record)
		if err != nil {
			return err
		}
		b.Queue(`INSERT INTO `+l.schema+`.events (id, record_id, type, route, created_at, next_attempt, attempts, last_error, parked, record)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING`,
			ev.ID, ev.Record.ID, ev.Type, ev.Route, colTime(ev.CreatedAt), colTime(ev.NextAttempt), ev.Attempts, ev.LastError, ev.Parked, data)
	}
	err := l.retry(ctx, func() (bool, error) {
		// All or nothing, and idempotent: safe to send again.
		return true, pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
			return tx.SendBatch(ctx, b).Close()
		})
	})
	if err != nil {
		return l.dbErr(ctx, err)
	}
	return nil
}

// RecountUsage replaces every subject's usage with what the records say,
// in one transaction: pending and confirmed counts and bytes. Windowed
// counts and rate buckets start afresh.
func (l *Ledger) RecountUsage(ctx context.Context) error {
	if err := l.begin(ctx); err != nil {
		return err
	}
	err := l.retry(ctx, func() (bool, error) {
		return true, pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `LOCK TABLE `+l.schema+`.usage IN EXCLUSIVE MODE`); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM `+l.schema+`.usage`); err != nil {
				return err
			}
			usage, err := countUsage(ctx, tx, l.schema)
			if err != nil {
				return err
			}
			b := &pgx.Batch{}
			for k, u := range usage {
				b.Queue(`INSERT INTO `+l.schema+`.usage (key, route, source, subject, pending, pending_bytes, uploads, bytes, state)
					VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '')`,
					k.Digest(), k.Route, k.Source, k.Subject, u.Pending, u.PendingBytes, u.Uploads, u.Bytes)
			}
			err = tx.SendBatch(ctx, b).Close()
			return err
		})
	})
	if err != nil {
		return l.dbErr(ctx, err)
	}
	return nil
}

// countUsage adds up, by quota key, what the records count towards usage
// (storage.UsageChanges: pending ones with their charge, confirmed ones
// into the totals).
func countUsage(ctx context.Context, tx pgx.Tx, schema string) (map[storage.QuotaKey]*storage.Usage, error) {
	rows, err := tx.Query(ctx, `SELECT data FROM `+schema+`.records WHERE status IN ('pending', 'confirmed')`)
	if err != nil {
		return nil, err
	}
	usage := map[storage.QuotaKey]*storage.Usage{}
	var data []byte
	_, err = pgx.ForEachRow(rows, []any{&data}, func() error {
		rec, err := decodeRecord(data)
		if err != nil {
			return err
		}
		for _, c := range storage.UsageChanges(nil, rec) {
			u := usage[c.Key]
			if u == nil {
				u = new(storage.Usage)
				usage[c.Key] = u
			}
			u.Apply(c)
		}
		return nil
	})
	return usage, err
}

// Export reads every record and event in one repeatable-read transaction.
func (l *Ledger) Export(ctx context.Context, rec func(*storage.Record) error, ev func(*storage.Event) error) error {
	if err := l.begin(ctx); err != nil {
		return err
	}
	err := pgx.BeginTxFunc(ctx, l.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT data FROM `+l.schema+`.records ORDER BY id`)
		if err != nil {
			return err
		}
		var data []byte
		if _, err := pgx.ForEachRow(rows, []any{&data}, func() error {
			r, err := decodeRecord(data)
			if err != nil {
				return err
			}
			return rec(r)
		}); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT `+eventCols+` FROM `+l.schema+`.events ORDER BY created_at, id`)
		if err != nil {
			return err
		}
		evs, err := scanEvents(rows)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if err := ev(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return l.dbErr(ctx, err)
	}
	return nil
}

var (
	_ storage.Importer = (*Ledger)(nil)
	_ storage.Exporter = (*Ledger)(nil)
)
