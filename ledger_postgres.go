package caddyupload

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddyupload/caddyupload/storage"
	"github.com/caddyupload/caddyupload/storage/pgledger"
)

func init() {
	caddy.RegisterModule(PostgresLedger{})
}

// pgLedgers holds one connection pool per database, schema and pool size
// for the whole process, so that a config reload keeps the pool (and its
// connections) instead of opening a second one beside it.
var pgLedgers = caddy.NewUsagePool()

// pgOpenTimeout bounds connecting and migrating the schema at provision.
const pgOpenTimeout = 30 * time.Second

// PostgresLedger keeps upload records and the webhook outbox in PostgreSQL,
// so that several Caddy instances behind one load balancer share them: any
// instance can complete an upload another one started. The tables are
// created, and migrated on upgrades, at provision.
type PostgresLedger struct {
	// DSN names the database: a URL (postgres://user:password@host:5432/db)
	// or a key=value string, as libpq takes them. Placeholders are
	// replaced at provision: give it as {env.UPLOAD_PG_DSN}, so that the
	// password stays out of the config that Caddy's admin API returns.
	// Required.
	DSN string `json:"dsn,omitempty"`
	// Schema holds the ledger's tables; created if missing. Instances that
	// share uploads use the same database and schema. Default:
	// caddyupload.
	Schema string `json:"schema,omitempty"`
	// MaxConns bounds this process's connections to the database.
	// Default: pool_max_conns from the DSN, else 4 or the number of CPUs,
	// whichever is more.
	MaxConns int `json:"max_conns,omitempty"`

	key     string
	ledger  *pgledger.Ledger
	release func()
}

// CaddyModule returns the Caddy module information.
func (PostgresLedger) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "upload.ledger.postgres",
		New: func() caddy.Module { return new(PostgresLedger) },
	}
}

type sharedPGLedger struct{ *pgledger.Ledger }

func (l sharedPGLedger) Destruct() error { return l.Close() }

// Provision connects, migrates the schema, or shares the pool this
// process already has for the same database, schema and size.
func (p *PostgresLedger) Provision(ctx caddy.Context) error {
	if p.MaxConns < 0 || p.MaxConns > math.MaxInt32 {
		return fmt.Errorf("ledger postgres: max_conns %d out of range", p.MaxConns)
	}
	dsn := caddy.NewReplacer().ReplaceKnown(p.DSN, "")
	if strings.TrimSpace(dsn) == "" {
		// Say which placeholder came out empty; never the DSN itself.
		return fmt.Errorf("ledger postgres: dsn is required and %q is empty (unset environment variable?)", p.DSN)
	}
	schema := p.Schema
	if schema == "" {
		schema = pgledger.DefaultSchema
	}
	// The key holds the password, in memory only: it is never logged.
	key := dsn + "\x00" + schema + "\x00" + strconv.Itoa(p.MaxConns)
	val, _, err := pgLedgers.LoadOrNew(key, func() (caddy.Destructor, error) {
		octx, cancel := context.WithTimeout(ctx, pgOpenTimeout)
		defer cancel()
		l, err := pgledger.Open(octx, dsn, pgledger.Options{Schema: schema, MaxConns: int32(p.MaxConns)})
		if err != nil {
			return nil, err
		}
		return sharedPGLedger{l}, nil
	})
	if err != nil {
		return fmt.Errorf("ledger postgres: %w", err)
	}
	l := val.(sharedPGLedger).Ledger
	p.key = key
	p.ledger = l
	// The identity (server, database, schema; no user or password) is what
	// the admin API shows, and what webhook delivery leases by.
	p.release = registerOutbox(l.Identity(), l)
	return nil
}

// Ledger implements LedgerBackend.
func (p *PostgresLedger) Ledger() storage.Ledger { return p.ledger }

// Cleanup releases this config's use of the pool; the last user closes it.
func (p *PostgresLedger) Cleanup() error {
	if p.key == "" {
		return nil
	}
	if p.release != nil {
		p.release()
	}
	_, err := pgLedgers.Delete(p.key)
	return err
}

// parsePostgresLedger parses the block of a `ledger postgres` directive; d
// is at the word postgres:
//
//	ledger postgres {
//		dsn       <url or key=value string, e.g. {env.UPLOAD_PG_DSN}>
//		schema    <name>
//		max_conns <n>
//	}
func parsePostgresLedger(d *caddyfile.Dispenser) (*PostgresLedger, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	p := new(PostgresLedger)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "dsn":
			err = oneArg(d, &p.DSN)
		case "schema":
			err = oneArg(d, &p.Schema)
		case "max_conns":
			var s string
			if err = oneArg(d, &s); err == nil {
				if p.MaxConns, err = strconv.Atoi(s); err != nil || p.MaxConns < 1 || p.MaxConns > math.MaxInt32 {
					return nil, d.Errf("max_conns: want a positive number, got %q", s)
				}
			}
		default:
			return nil, d.Errf("unknown subdirective %q", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	if p.DSN == "" {
		return nil, d.Err("ledger postgres: dsn is required, e.g. dsn {env.UPLOAD_PG_DSN}")
	}
	return p, nil
}

var (
	_ caddy.Provisioner  = (*PostgresLedger)(nil)
	_ caddy.CleanerUpper = (*PostgresLedger)(nil)
	_ LedgerBackend      = (*PostgresLedger)(nil)
)
