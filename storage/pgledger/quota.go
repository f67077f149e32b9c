package pgledger

import (
	"bytes"
	"context"
	"errors"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/caddyupload/caddyupload/storage"
)

// Usage lives in the usage table, one row per route and subject, keyed by
// storage.QuotaKey.Digest(). The counters are columns, so that the group
// commit can add its pending creates in the same statement that inserts
// them; the rest of storage.Usage (window slots, rate bucket) is in state,
// read and written under the row lock (SELECT ... FOR UPDATE) by the
// transaction that writes the record. The row lock orders every change of
// one subject's usage across instances: concurrent creates never
// overshoot a limit.

// quotaQueries are the usage statements, with the schema filled in.
type quotaQueries struct {
	insertRecord, insertRecords, ensureUsage, lockUsage, getUsage, putUsage string
}

func newQuotaQueries(s string) quotaQueries {
	f := func(q string) string { return strings.ReplaceAll(q, "$S", s) }
	return quotaQueries{
		// One pending create, added to its usage in the same statement.
		insertRecord: f(`WITH ins AS (
				INSERT INTO $S.records (` + recordCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
				RETURNING id
			)
			INSERT INTO $S.usage AS u (key, route, source, subject, pending, pending_bytes, uploads, bytes, state)
			SELECT $13, $5, $7, $6, 1, $14, 0, 0, ''::bytea FROM ins
			ON CONFLICT (key) DO UPDATE SET pending = u.pending + 1, pending_bytes = u.pending_bytes + excluded.pending_bytes`),
		// The group commit's INSERT of many rows, adding the rows it
		// inserted (not those ON CONFLICT left out) to their usage in the
		// same statement. Usage rows are updated in key order, so that two
		// batches never wait for each other's rows in a cycle.
		insertRecords: f(`WITH ins AS (
				INSERT INTO $S.records (` + recordCols + `)
				SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
					$8::timestamptz[], $9::boolean[], $10::timestamptz[], $11::timestamptz[], $12::bytea[])
				ON CONFLICT DO NOTHING RETURNING id
			), counted AS (
				SELECT c.key, min(c.route) AS route, min(c.source) AS source, min(c.subject) AS subject,
					count(*) AS n, sum(c.charge)::bigint AS b
				FROM unnest($1::text[], $13::bytea[], $5::text[], $7::text[], $6::text[], $14::bigint[])
					AS c(id, key, route, source, subject, charge)
				JOIN ins ON ins.id = c.id
				GROUP BY c.key
			), counts AS (
				INSERT INTO $S.usage AS u (key, route, source, subject, pending, pending_bytes, uploads, bytes, state)
				SELECT key, route, source, subject, n, b, 0, 0, ''::bytea FROM counted ORDER BY key
				ON CONFLICT (key) DO UPDATE SET pending = u.pending + excluded.pending,
					pending_bytes = u.pending_bytes + excluded.pending_bytes
			)
			SELECT id FROM ins`),
		// A row must exist before it can be locked: two creates of a new
		// subject would otherwise both find nothing to lock.
		ensureUsage: f(`INSERT INTO $S.usage (key, route, source, subject, pending, pending_bytes, uploads, bytes, state)
			VALUES ($1, $2, $3, $4, 0, 0, 0, 0, ''::bytea) ON CONFLICT (key) DO NOTHING`),
		lockUsage: f(`SELECT pending, pending_bytes, uploads, bytes, state FROM $S.usage WHERE key = $1 FOR UPDATE`),
		getUsage:  f(`SELECT pending, pending_bytes, uploads, bytes, state FROM $S.usage WHERE key = $1`),
		putUsage: f(`UPDATE $S.usage SET pending = $2, pending_bytes = $3, uploads = $4, bytes = $5, state = $6
			WHERE key = $1`),
	}
}

// admission is the quota check of a create.
type admission struct {
	rec *storage.Record
	lim storage.Limits
}

// CreateWithin stores rec if it fits lim given its subject's usage at
// rec.CreatedAt: the usage row is locked, checked, and written in the
// transaction that inserts the record. A create that does not fit writes
// nothing and returns a *storage.QuotaError.
func (l *Ledger) CreateWithin(ctx context.Context, rec *storage.Record, lim storage.Limits) error {
	if err := lim.Check(); err != nil {
		return err
	}
	return l.create(ctx, rec, &lim)
}

// Usage returns the stored usage of key; zero if it has none.
func (l *Ledger) Usage(ctx context.Context, key storage.QuotaKey) (*storage.Usage, error) {
	if err := l.begin(ctx); err != nil {
		return nil, err
	}
	u := new(storage.Usage)
	err := l.retry(ctx, func() (bool, error) {
		var err error
		u, err = scanUsage(l.pool.QueryRow(ctx, l.qq.getUsage, key.Digest()))
		if errors.Is(err, pgx.ErrNoRows) {
			u, err = new(storage.Usage), nil
		}
		return true, err
	})
	if err != nil {
		return nil, l.dbErr(ctx, err)
	}
	return u, nil
}

func scanUsage(row pgx.Row) (*storage.Usage, error) {
	var (
		counts [4]int64
		state  []byte
	)
	if err := row.Scan(&counts[0], &counts[1], &counts[2], &counts[3], &state); err != nil {
		return nil, err
	}
	u := new(storage.Usage)
	if err := u.UnmarshalBinary(state); err != nil {
		return nil, err
	}
	// The columns are the counters: the group commit moves them alone.
	u.Pending, u.PendingBytes, u.Uploads, u.Bytes = counts[0], counts[1], counts[2], counts[3]
	return u, nil
}

// createPending inserts rec, a pending record without an event, and adds
// it to its usage in one statement: one round trip, as without quotas.
func (l *Ledger) createPending(ctx context.Context, rec *storage.Record, data []byte, args []any) error {
	args = append(args[:len(args):len(args)], storage.QuotaKeyOf(rec).Digest(), storage.Charge(rec))
	lost := false
	err := l.retry(ctx, func() (bool, error) {
		_, err := l.pool.Exec(ctx, l.qq.insertRecord, args...)
		lost = lost || l.connLost(ctx, err)
		// Safe to try again: if the lost attempt did commit, the next one
		// meets that very record and counts as its answer (below).
		return true, err
	})
	if isUniqueViolation(err) {
		if lost && l.storedAs(ctx, rec.ID, data) {
			err = nil
		} else {
			return conflictError(rec, err)
		}
	}
	if err != nil {
		return l.dbErr(ctx, err)
	}
	l.writes.Add(1)
	l.commits.Add(1)
	return nil
}

// createTx inserts rec (and its event, ev, if any) in a transaction that
// also locks, checks (adm) and moves its subject's usage.
func (l *Ledger) createTx(ctx context.Context, rec *storage.Record, data []byte, args, ev []any, lim *storage.Limits) error {
	var adm *admission
	if lim != nil {
		adm = &admission{rec: rec, lim: *lim}
	}
	changes := storage.UsageChanges(nil, rec)
	lost := false
	err := l.retry(ctx, func() (bool, error) {
		tx, err := l.pool.Begin(ctx)
		if err != nil {
			lost = lost || l.connLost(ctx, err)
			return true, err
		}
		defer tx.Rollback(ctx)
		b := &pgx.Batch{}
		b.Queue(l.q.insertRecord, args...)
		if ev != nil {
			b.Queue(l.q.upsertEvent, ev...)
		}
		if err := l.queueUsage(ctx, tx, b, storage.QuotaKeyOf(rec), changes, adm); err != nil {
			if _, refused := err.(finalError); refused {
				return false, err
			}
			lost = lost || l.connLost(ctx, err)
			return true, err // nothing is written until commit
		}
		err = tx.SendBatch(ctx, b).Close()
		if err == nil {
			err = tx.Commit(ctx)
		}
		lost = lost || l.connLost(ctx, err)
		// Safe to try again: if the lost attempt did commit, the next one
		// meets that very record and counts as its answer (below).
		return true, err
	})
	if err != nil && lost && l.storedAs(ctx, rec.ID, data) {
		// A commit whose answer was lost went through; the attempt after
		// it conflicted with its own record, or found the quota it had
		// itself filled.
		err = nil
	}
	if fe, ok := err.(finalError); ok {
		return fe.err
	}
	if isUniqueViolation(err) {
		return conflictError(rec, err)
	}
	if err != nil {
		return l.dbErr(ctx, err)
	}
	l.writes.Add(1)
	l.commits.Add(1)
	return nil
}

// queueUsage locks the usage rows that changes (and adm, on the usage of
// key) touch, in key order, applies them and queues their writes on b, to
// be sent in tx. A create adm refuses is a finalError with the
// *storage.QuotaError.
func (l *Ledger) queueUsage(ctx context.Context, tx pgx.Tx, b *pgx.Batch, key storage.QuotaKey, changes []storage.UsageChange, adm *admission) error {
	keys := make([]storage.QuotaKey, 0, len(changes)+1)
	for _, c := range changes {
		keys = append(keys, c.Key)
	}
	if adm != nil {
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil
	}
	type row struct {
		key    storage.QuotaKey
		digest []byte
		u      *storage.Usage
	}
	var rows []*row
	find := func(k storage.QuotaKey) *row {
		d := k.Digest()
		for _, r := range rows {
			if bytes.Equal(r.digest, d) {
				return r
			}
		}
		return nil
	}
	for _, k := range keys {
		if find(k) == nil {
			rows = append(rows, &row{key: k, digest: k.Digest()})
		}
	}
	sort.Slice(rows, func(i, j int) bool { return bytes.Compare(rows[i].digest, rows[j].digest) < 0 })

	lb := &pgx.Batch{}
	for _, r := range rows {
		lb.Queue(l.qq.ensureUsage, r.digest, r.key.Route, r.key.Source, r.key.Subject)
		lb.Queue(l.qq.lockUsage, r.digest)
	}
	br := tx.SendBatch(ctx, lb)
	var err error
	for _, r := range rows {
		if _, err = br.Exec(); err != nil {
			break
		}
		if r.u, err = scanUsage(br.QueryRow()); err != nil {
			break
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if adm != nil {
		if err := find(key).u.Admit(adm.rec, adm.lim, adm.rec.CreatedAt); err != nil {
			return finalError{err}
		}
	}
	for _, c := range changes {
		find(c.Key).u.Apply(c)
	}
	for _, r := range rows {
		state, err := r.u.MarshalBinary()
		if err != nil {
			return finalError{err}
		}
		b.Queue(l.qq.putUsage, r.digest, r.u.Pending, r.u.PendingBytes, r.u.Uploads, r.u.Bytes, state)
	}
	return nil
}

// groupUsageColumns are the two arrays the group commit's statement takes
// beyond the record columns: each row's usage key and pending charge.
func groupUsageColumns(batch []*createReq) (keys [][]byte, charges []int64) {
	keys = make([][]byte, len(batch))
	charges = make([]int64, len(batch))
	for i, r := range batch {
		keys[i] = storage.QuotaKeyOf(r.rec).Digest()
		charges[i] = storage.Charge(r.rec)
	}
	return keys, charges
}

var _ storage.QuotaLedger = (*Ledger)(nil)
