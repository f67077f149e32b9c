package pgledger

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// migrations are applied in order, each once, and recorded in
// schema_migrations; version n is migrations[n-1]. Never change one that
// has shipped: add the next. "%[1]s" is the quoted schema.
//
// The record is kept whole in data (the versioned encoding of codec.go,
// exact to the nanosecond and for any string Go holds); the columns beside
// it are what queries select and order by. expires_at, created_at and
// updated_at are the record's times to the microsecond.
var migrations = []string{
	`CREATE TABLE %[1]s.records (
		id          text PRIMARY KEY,
		store       text NOT NULL,
		key         text NOT NULL,
		status      text NOT NULL,
		route       text NOT NULL,
		subject     text NOT NULL,
		source      text NOT NULL,
		expires_at  timestamptz NOT NULL,
		needs_sweep boolean NOT NULL,
		created_at  timestamptz NOT NULL,
		updated_at  timestamptz NOT NULL,
		data        bytea NOT NULL,
		CONSTRAINT records_store_key UNIQUE (store, key)
	);
	-- DueSweep: a store's records that need the sweeper, by expiry.
	CREATE INDEX records_due ON %[1]s.records (store, expires_at, id) WHERE needs_sweep;

	CREATE TABLE %[1]s.events (
		id           text PRIMARY KEY,
		record_id    text NOT NULL,
		type         text NOT NULL,
		route        text NOT NULL,
		created_at   timestamptz NOT NULL,
		next_attempt timestamptz NOT NULL,
		attempts     integer NOT NULL,
		last_error   text NOT NULL,
		parked       boolean NOT NULL,
		record       bytea NOT NULL
	);
	-- DueEvents of one route and of all; the per-record order.
	CREATE INDEX events_due ON %[1]s.events (route, next_attempt, id) WHERE NOT parked;
	CREATE INDEX events_due_all ON %[1]s.events (next_attempt, id) WHERE NOT parked;
	CREATE INDEX events_record ON %[1]s.events (record_id, created_at, id);
	-- ParkedEvents of one route and of all.
	CREATE INDEX events_parked ON %[1]s.events (route, created_at, id) WHERE parked;
	CREATE INDEX events_parked_all ON %[1]s.events (created_at, id) WHERE parked;`,

	// Leases (lease.go): work one instance at a time does, such as sweeping
	// a route's store or delivering its webhooks. expires_at is the
	// database's clock.
	`CREATE TABLE %[1]s.leases (
		name       text PRIMARY KEY,
		holder     text NOT NULL,
		expires_at timestamptz NOT NULL
	);`,

	// Quotas: each route's and subject's usage (quota.go), keyed by
	// storage.QuotaKey.Digest(): SHA-256 of the route and the source, each
	// after its length in 4 big-endian bytes, then the subject. The records
	// already stored are counted: pending ones with their charge (size, or
	// the policy's max_size when created without one), confirmed ones into
	// the totals. Records stored before this migration are JSON
	// (storage.encodingV1): the sizes are read with patterns on its escaped
	// bytes, whatever the database's encoding: a string value cannot
	// contain an unescaped quote, so only the record's own "size" and
	// "max_size" fields match.
	`CREATE TABLE %[1]s.usage (
		key           bytea PRIMARY KEY,
		route         text NOT NULL,
		source        text NOT NULL,
		subject       text NOT NULL,
		pending       bigint NOT NULL,
		pending_bytes bigint NOT NULL,
		uploads       bigint NOT NULL,
		bytes         bigint NOT NULL,
		state         bytea NOT NULL
	);
	` + recountUsage,
}

// recountUsage counts every subject's usage from the JSON records stored
// before the usage table existed (schema as %[1]s).
const recountUsage = `
	INSERT INTO %[1]s.usage (key, route, source, subject, pending, pending_bytes, uploads, bytes, state)
	SELECT sha256(int4send(length(convert_to(route, 'UTF8'))) || convert_to(route, 'UTF8') ||
			int4send(length(convert_to(source, 'UTF8'))) || convert_to(source, 'UTF8') || convert_to(subject, 'UTF8')),
		route, source, subject,
		count(*) FILTER (WHERE status = 'pending'),
		coalesce(sum(CASE WHEN size > 0 THEN size ELSE max_size END) FILTER (WHERE status = 'pending'), 0),
		count(*) FILTER (WHERE status = 'confirmed'),
		coalesce(sum(size) FILTER (WHERE status = 'confirmed'), 0),
		''::bytea
	FROM (SELECT route, source, subject, status,
			coalesce(substring(encode(data, 'escape') from ',"size":([0-9]+)')::bigint, 0) AS size,
			coalesce(substring(encode(data, 'escape') from '"max_size":([0-9]+)')::bigint, 0) AS max_size
		FROM %[1]s.records) r
	GROUP BY route, source, subject;`

// migrate brings the schema to the newest version. Instances starting at
// once serialize on an advisory lock held until the transaction ends, so
// each migration runs exactly once; the DDL is transactional, so a failed
// migration leaves nothing behind. Nothing is created when everything
// exists: a role without CREATE on the database can use a schema prepared
// for it.
func (l *Ledger) migrate(ctx context.Context, schema string) error {
	tx, err := l.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLockKey(schema)); err != nil {
		return err
	}
	quoted := pgx.Identifier{schema}.Sanitize()
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if _, err := tx.Exec(ctx, "CREATE SCHEMA "+quoted); err != nil {
			return fmt.Errorf("creating schema %s: %w", quoted, err)
		}
	}
	if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", quoted+".schema_migrations").Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if _, err := tx.Exec(ctx, "CREATE TABLE "+quoted+".schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"); err != nil {
			return fmt.Errorf("creating %s.schema_migrations: %w", quoted, err)
		}
	}
	var version int
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+quoted+".schema_migrations").Scan(&version); err != nil {
		return err
	}
	if version > len(migrations) {
		return fmt.Errorf("schema %s is at version %d, newer than this build knows (%d): upgrade caddyupload", quoted, version, len(migrations))
	}
	if version == len(migrations) {
		return tx.Commit(ctx)
	}
	for v := version + 1; v <= len(migrations); v++ {
		if _, err := tx.Exec(ctx, fmt.Sprintf(migrations[v-1], quoted)); err != nil {
			return fmt.Errorf("migration %d of schema %s: %w", v, quoted, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+quoted+".schema_migrations (version) VALUES ($1)", v); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// migrationLockKey is the advisory lock of one schema's migrations.
func migrationLockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("caddyupload migrations\x00" + schema))
	return int64(h.Sum64())
}

// queries are the statements, with the schema filled in once at Open.
type queries struct {
	insertRecord, insertRecords, getRecord, getRecordByKey, lockRecord, updateRecord string
	dueSweep, recordData, deleteRecord, listRecords                                  string
	upsertEvent, deleteEvent, retryEvent, replayEvent, lockEvent, rerouteEvent       string
	dueEvents, dueEventsAll                                                          string
	parked                                                                           string
}

// recordCols are the columns of a record row in the order recordArgs
// gives their values.
const recordCols = "id, store, key, status, route, subject, source, expires_at, needs_sweep, created_at, updated_at, data"

const eventCols = "id, type, route, created_at, next_attempt, attempts, last_error, parked, record"

func newQueries(s string) queries {
	f := func(q string) string { return strings.ReplaceAll(q, "$S", s) }
	return queries{
		insertRecord: f(`INSERT INTO $S.records (` + recordCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`),
		// Many creates in one statement: a row that conflicts is left out
		// (and its caller told) without failing the others.
		insertRecords: f(`INSERT INTO $S.records (` + recordCols + `)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
				$8::timestamptz[], $9::boolean[], $10::timestamptz[], $11::timestamptz[], $12::bytea[])
			ON CONFLICT DO NOTHING RETURNING id`),
		getRecord:      f(`SELECT data FROM $S.records WHERE id = $1`),
		getRecordByKey: f(`SELECT data FROM $S.records WHERE store = $1 AND key = $2`),
		lockRecord:     f(`SELECT data FROM $S.records WHERE id = $1 FOR UPDATE`),
		updateRecord: f(`UPDATE $S.records SET store = $2, key = $3, status = $4, route = $5, subject = $6, source = $7,
			expires_at = $8, needs_sweep = $9, created_at = $10, updated_at = $11, data = $12 WHERE id = $1`),
		dueSweep: f(`SELECT data FROM $S.records WHERE store = $1 AND needs_sweep AND expires_at <= $2
			ORDER BY expires_at, id LIMIT $3`),
		recordData:   f(`SELECT id, data FROM $S.records WHERE id = ANY($1)`),
		deleteRecord: f(`DELETE FROM $S.records WHERE id = $1`),
		// Empty filters match everything; the primary key orders and pages.
		listRecords: f(`SELECT data FROM $S.records
			WHERE ($1 = '' OR route = $1) AND ($2 = '' OR subject = $2) AND ($3 = '' OR status = $3)
			AND ($4::timestamptz IS NULL OR created_at < $4) AND ($5 = '' OR id < $5)
			ORDER BY id DESC LIMIT $6`),

		// The event of a status change; an event of the same id still
		// waiting (the record went back and forth) is replaced by the new
		// one. Its time is the database's clock (unless the tests set one,
		// $5): the row lock on the record orders the record's changes, and
		// one clock read under that lock keeps their events in the same
		// order, whatever the clocks of the instances writing them say.
		upsertEvent: f(`INSERT INTO $S.events (id, record_id, type, route, created_at, next_attempt, attempts, last_error, parked, record)
			SELECT $1, $2, $3, $4, t.at, t.at, 0, '', false, $6
			FROM (SELECT coalesce($5::timestamptz, clock_timestamp()) AS at) t
			ON CONFLICT (id) DO UPDATE SET record_id = excluded.record_id, type = excluded.type, route = excluded.route,
				created_at = excluded.created_at, next_attempt = excluded.next_attempt, attempts = 0, last_error = '',
				parked = false, record = excluded.record`),
		deleteEvent: f(`DELETE FROM $S.events WHERE id = $1`),
		retryEvent: f(`UPDATE $S.events SET attempts = attempts + 1, last_error = $2, parked = $3,
			next_attempt = CASE WHEN $3 THEN next_attempt ELSE $4 END WHERE id = $1`),
		replayEvent: f(`UPDATE $S.events SET parked = false, attempts = 0, next_attempt = coalesce($2, clock_timestamp()) WHERE id = $1`),
		lockEvent:   f(`SELECT record FROM $S.events WHERE id = $1 FOR UPDATE`),
		rerouteEvent: f(`UPDATE $S.events SET route = $2, record = $3, parked = false, attempts = 0,
			next_attempt = coalesce($4, clock_timestamp()) WHERE id = $1`),

		// An event waits while an earlier one of its record is in the
		// outbox, whatever that one's state: one upload's events are
		// delivered in the order they happened.
		dueEvents: f(`SELECT ` + eventCols + ` FROM $S.events e
			WHERE NOT e.parked AND e.route = $1 AND e.next_attempt <= $2
			AND NOT EXISTS (SELECT 1 FROM $S.events p WHERE p.record_id = e.record_id AND (p.created_at, p.id) < (e.created_at, e.id))
			ORDER BY e.next_attempt, e.id LIMIT $3`),
		dueEventsAll: f(`SELECT ` + eventCols + ` FROM $S.events e
			WHERE NOT e.parked AND e.next_attempt <= $1
			AND NOT EXISTS (SELECT 1 FROM $S.events p WHERE p.record_id = e.record_id AND (p.created_at, p.id) < (e.created_at, e.id))
			ORDER BY e.next_attempt, e.id LIMIT $2`),
		parked: f(`SELECT ` + eventCols + ` FROM $S.events WHERE parked`),
	}
}
