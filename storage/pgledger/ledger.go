// Package pgledger is the storage.Ledger and storage.Outbox kept in
// PostgreSQL, so that several Caddy instances can share one state. Every
// write is one transaction, committed (synchronous_commit as the server
// says, on by default) before its call returns; an outbox event is written
// in the same transaction as the status change it reports. Creates from
// concurrent callers share one transaction (group commit).
package pgledger

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/caddyupload/caddyupload/storage"
)

// DefaultSchema is the schema the tables live in unless Options.Schema says
// otherwise.
const DefaultSchema = "caddyupload"

// ErrClosed is returned by every call on a closed Ledger.
var ErrClosed = errors.New("ledger closed")

// Options tune Open.
type Options struct {
	// Schema holds the ledger's tables; created when missing. Several
	// ledgers can live in one database under different schemas. Default:
	// DefaultSchema.
	Schema string
	// MaxConns bounds the connection pool. Default: pool_max_conns from
	// the DSN, else pgxpool's default (4 or the number of CPUs).
	MaxConns int32
	// NoGroupCommit runs each Create as its own statement. Durability is
	// the same; under concurrency more transactions are committed.
	// Default: false.
	NoGroupCommit bool
}

// Ledger is a storage.Ledger and storage.Outbox in a PostgreSQL schema. It
// is safe for concurrent use, also by several processes on one database.
type Ledger struct {
	pool     *pgxpool.Pool
	q        queries
	qq       quotaQueries
	schema   string // quoted
	identity string
	group    *groupCommit // nil with NoGroupCommit

	closed atomic.Bool

	writes  atomic.Uint64
	commits atomic.Uint64
}

// Stats are counters since Open.
type Stats struct {
	// Writes counts successful writes: creates, updates and the changes of
	// outbox events.
	Writes uint64
	// Commits counts the transactions that carried them.
	Commits uint64
}

// Open connects to the database named by dsn (a URL or key=value string, as
// libpq takes them), creates or migrates the schema and returns the ledger.
// Several processes may open the same database and schema at once.
func Open(ctx context.Context, dsn string, opts Options) (*Ledger, error) {
	if opts.Schema == "" {
		opts.Schema = DefaultSchema
	}
	if err := checkSchemaName(opts.Schema); err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx leaves the password out of its parse errors.
		return nil, fmt.Errorf("ledger dsn: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	l := &Ledger{
		pool:     pool,
		q:        newQueries(pgx.Identifier{opts.Schema}.Sanitize()),
		schema:   pgx.Identifier{opts.Schema}.Sanitize(),
		qq:       newQuotaQueries(pgx.Identifier{opts.Schema}.Sanitize()),
		identity: identity(cfg.ConnConfig, opts.Schema),
	}
	if err := l.migrate(ctx, opts.Schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("ledger %s: %w", l.identity, l.dbErr(ctx, err))
	}
	if !opts.NoGroupCommit {
		l.group = newGroupCommit(l)
	}
	return l, nil
}

// identity names the data the ledger reads and writes: server, database and
// schema. The user and password are not part of it.
func identity(c *pgx.ConnConfig, schema string) string {
	return "postgres://" + net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port))) + "/" + c.Database + "?schema=" + schema
}

// Identity is "postgres://host:port/database?schema=name": every Ledger
// with the same identity reads the same records, in this process or
// another one.
func (l *Ledger) Identity() string { return l.identity }

// Stats returns the counters since Open.
func (l *Ledger) Stats() Stats {
	return Stats{Writes: l.writes.Load(), Commits: l.commits.Load()}
}

// Close lets queued creates finish, then closes the pool (waiting for calls
// in progress). Later calls fail with ErrClosed. Closing twice is a no-op.
func (l *Ledger) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	if l.group != nil {
		l.group.close()
	}
	l.pool.Close()
	return nil
}

// begin refuses a call on a closed ledger or with a done context.
func (l *Ledger) begin(ctx context.Context) error {
	if l.closed.Load() {
		return ErrClosed
	}
	return ctx.Err()
}

// dbErr wraps a failure of the database (unreachable, restarting, out of
// connections, an unexpected answer) in storage.ErrUnavailable, which the
// module answers with 503 storage_unavailable; the cause stays in the chain
// for the log. The caller's own cancellation is returned as it is.
func (l *Ledger) dbErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return err
	}
	if l.closed.Load() {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
}

// connLost reports whether err is a failure to talk to the server rather
// than an answer to the statement: the call may be tried again on another
// connection. A server that shuts down or crashes tells its clients so
// (57P01-57P03) before it goes; a connection that fails, and one that dies,
// is class 08 or no answer at all.
func (l *Ledger) connLost(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil || l.closed.Load() {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03"
	}
	return !errors.Is(err, pgx.ErrNoRows) && !errors.Is(err, pgx.ErrTxClosed) &&
		!errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrConflict)
}

// attempts is how often a call that lost its connection is tried: a
// restarted server leaves dead connections in the pool, found one by one.
const attempts = 3

// retry runs fn again while it fails with a lost connection and says it is
// safe to (nothing was written, or the write is idempotent).
func (l *Ledger) retry(ctx context.Context, fn func() (safe bool, err error)) error {
	var err error
	for range attempts {
		var safe bool
		safe, err = fn()
		if err == nil || !safe || !l.connLost(ctx, err) {
			return err
		}
	}
	return err
}

// isUniqueViolation reports a unique_violation (23505).
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// validText reports whether s can be stored in a text column: PostgreSQL
// refuses zero bytes and invalid UTF-8 there.
func validText(s string) bool {
	return utf8.ValidString(s) && !containsZero(s)
}

func containsZero(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return true
		}
	}
	return false
}

func checkSchemaName(s string) error {
	// NAMEDATALEN - 1: PostgreSQL would silently truncate a longer name,
	// and two long names could then meet in one schema.
	if len(s) > 63 || !validText(s) {
		return fmt.Errorf("ledger schema %q: at most 63 bytes of UTF-8, no zero byte", s)
	}
	return nil
}

var (
	_ storage.Ledger     = (*Ledger)(nil)
	_ storage.Outbox     = (*Ledger)(nil)
	_ storage.Identified = (*Ledger)(nil)
)

// wrote ends a write transaction's retry loop: an error marked final is
// the caller's answer as it is, any other the database's; a success counts
// one write in one commit.
func (l *Ledger) wrote(ctx context.Context, err error) error {
	if fe, ok := err.(finalError); ok {
		return fe.err
	}
	if err != nil {
		return l.dbErr(ctx, err)
	}
	l.writes.Add(1)
	l.commits.Add(1)
	return nil
}
