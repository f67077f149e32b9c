package pgledger

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/caddyupload/caddyupload/storage"
)

// UpdateEach updates the records of ids in one transaction: their rows are
// locked in id order (as another UpdateEach locks them, so two never wait
// for each other), fn runs on each, and the updates, their events and the
// usage they change go in one batch and one commit: three round trips for
// the lot instead of three each. A record that is missing or that fn
// refuses is left out alone. A statement that fails aborts the whole
// transaction, which cannot say which record it was (another record took
// the key an update moves to): then every record is updated alone with
// Update, fn running again on each, so that only that one fails.
func (l *Ledger) UpdateEach(ctx context.Context, ids []string, fn func(int, *storage.Record) error) ([]*storage.Record, []error) {
	recs, errs := make([]*storage.Record, len(ids)), make([]error, len(ids))
	if len(ids) == 0 {
		return recs, errs
	}
	if err := l.begin(ctx); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return recs, errs
	}
	var lockIDs []string
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if validText(id) && !seen[id] {
			seen[id] = true
			lockIDs = append(lockIDs, id)
		}
	}
	stored := 0
	err := l.retry(ctx, func() (bool, error) {
		clear(recs)
		clear(errs)
		b := &pgx.Batch{}
		b.BeginTx(pgx.TxOptions{})
		b.Queue(strings.ReplaceAll(`SELECT id, data FROM $S.records WHERE id = ANY($1) ORDER BY id FOR UPDATE`, "$S", l.schema), lockIDs)
		br := l.pool.SendBatch(ctx, b)
		tx := br.Tx()
		defer tx.Rollback(ctx)
		current := make(map[string]*storage.Record, len(lockIDs))
		undecodable := map[string]error{} // fails that record alone
		_, err := br.Exec()
		if err == nil {
			var rows pgx.Rows
			rows, err = br.Query()
			for err == nil && rows.Next() {
				var id string
				var data []byte
				if err = rows.Scan(&id, &data); err == nil {
					if rec, derr := decodeRecord(data); derr != nil {
						undecodable[id] = fmt.Errorf("record %s: %w", id, derr)
					} else {
						current[id] = rec
					}
				}
			}
			if rows != nil {
				rows.Close()
				if err == nil {
					err = rows.Err()
				}
			}
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return true, err // nothing was written, fn has not run
		}

		wb := &pgx.Batch{}
		var changes []storage.UsageChange
		for i, id := range ids {
			cur := current[id]
			if cur == nil {
				errs[i] = undecodable[id]
				if errs[i] == nil {
					errs[i] = notFound(id)
				}
				continue
			}
			rec := cur.Clone()
			if err := fn(i, rec); err != nil {
				errs[i] = err
				continue
			}
			if rec.ID != id {
				errs[i] = fmt.Errorf("update of record %s changed its id to %q", id, rec.ID)
				continue
			}
			if err := checkRecord(rec); err != nil {
				errs[i] = err
				continue
			}
			data, err := encodeRecord(rec)
			if err != nil {
				errs[i] = err
				continue
			}
			wb.Queue(l.q.updateRecord, recordArgs(rec, data)...)
			if ev := eventArgs(cur.Status, rec, data); ev != nil {
				wb.Queue(l.q.upsertEvent, ev...)
			}
			changes = append(changes, storage.UsageChanges(cur, rec)...)
			// A repeated id's next run starts from this one.
			current[id] = rec
			recs[i] = rec
		}
		if wb.Len() == 0 {
			return false, nil
		}
		if err := l.queueUsage(ctx, tx, wb, storage.QuotaKey{}, changes, nil); err != nil {
			return false, err
		}
		err = tx.SendBatch(ctx, wb).Close()
		if err == nil {
			err = tx.Commit(ctx)
		}
		if err != nil {
			return false, err
		}
		return false, nil
	})
	if err != nil && isUniqueViolation(err) {
		return l.updateEachAlone(ctx, ids, fn)
	}
	if err != nil {
		if fe, ok := err.(finalError); ok {
			err = fe.err
		} else {
			err = l.dbErr(ctx, err)
		}
		for i := range ids {
			if errs[i] == nil || recs[i] != nil {
				recs[i], errs[i] = nil, err
			}
		}
		return recs, errs
	}
	for i, rec := range recs {
		if rec != nil {
			// fn may have kept a pointer to rec; the caller gets its own copy.
			recs[i] = rec.Clone()
			stored++
		}
	}
	if stored > 0 {
		l.writes.Add(uint64(stored))
		l.commits.Add(1)
	}
	return recs, errs
}

// updateEachAlone is UpdateEach one record at a time.
func (l *Ledger) updateEachAlone(ctx context.Context, ids []string, fn func(int, *storage.Record) error) ([]*storage.Record, []error) {
	recs, errs := make([]*storage.Record, len(ids)), make([]error, len(ids))
	for i, id := range ids {
		recs[i], errs[i] = l.Update(ctx, id, func(rec *storage.Record) error { return fn(i, rec) })
	}
	return recs, errs
}

var _ storage.BatchUpdater = (*Ledger)(nil)
