package pgledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddyupload/caddyupload/internal/realservers"
	"github.com/caddyupload/caddyupload/storage"
	"github.com/caddyupload/caddyupload/storage/storagetest"
)

// One PostgreSQL for the package's tests; each test gets a database.
func TestMain(m *testing.M) { realservers.PostgresMain(m) }

var testModes = []struct {
	name string
	opts Options
}{
	{"GroupCommit", Options{}},
	{"NoGroupCommit", Options{NoGroupCommit: true}},
}

// schemaFor maps the suites' directory to a schema: reopening the same
// directory opens the same schema, so the data is still there.
func schemaFor(dir string) string {
	sum := sha256.Sum256([]byte(dir))
	return "s_" + hex.EncodeToString(sum[:8])
}

func openTest(t testing.TB, dsn string, opts Options) *Ledger {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := Open(ctx, dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestConformance(t *testing.T) {
	dsn := realservers.Postgres(t)
	for _, mode := range testModes {
		t.Run(mode.name, func(t *testing.T) {
			storagetest.RunLedger(t, func(t *testing.T, dir string) storage.Ledger {
				opts := mode.opts
				opts.Schema = schemaFor(dir)
				return openTest(t, dsn, opts)
			})
		})
	}
}

// setClock sets the time written into events; nil is the database's clock.
func setClock(now func() time.Time) { clock = now }

func TestOutboxConformance(t *testing.T) {
	dsn := realservers.Postgres(t)
	for _, mode := range testModes {
		t.Run(mode.name, func(t *testing.T) {
			storagetest.RunOutbox(t, func(t *testing.T, dir string) interface {
				storage.Ledger
				storage.Outbox
			} {
				opts := mode.opts
				opts.Schema = schemaFor(dir)
				return openTest(t, dsn, opts)
			}, storagetest.WithClock(setClock))
		})
	}
}

func testRecord(id, key string) *storage.Record {
	return &storage.Record{
		ID: id, Key: key, Status: storage.StatusPending, CreatedAt: time.Unix(1_900_000_000, 0),
		Internal: storage.RecordInternal{Store: "s3:test", Kind: storage.KindPut, ExpiresAt: time.Unix(1_900_003_600, 0)},
	}
}

// TestTwoInstances runs two Ledger values on one database, as two Caddy
// instances would: what one writes the other reads, and concurrent updates
// of one record by both lose none.
func TestTwoInstances(t *testing.T) {
	dsn := realservers.Postgres(t)
	ctx := t.Context()

	// Instances starting at once migrate the schema once.
	var wg sync.WaitGroup
	ledgers := make([]*Ledger, 4)
	errs := make([]error, len(ledgers))
	for i := range ledgers {
		wg.Go(func() { ledgers[i], errs[i] = Open(ctx, dsn, Options{Schema: "shared", MaxConns: 4}) })
	}
	wg.Wait()
	for i, l := range ledgers {
		if errs[i] != nil {
			t.Fatalf("concurrent Open %d: %v", i, errs[i])
		}
		t.Cleanup(func() { l.Close() })
	}
	a, b := ledgers[0], ledgers[1]
	if a.Identity() != b.Identity() {
		t.Fatalf("identities %q and %q of one schema differ", a.Identity(), b.Identity())
	}
	var versions int
	if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM shared.schema_migrations`).Scan(&versions); err != nil || versions != len(migrations) {
		t.Fatalf("schema_migrations has %d rows (%v), want %d", versions, err, len(migrations))
	}

	if err := a.Create(ctx, testRecord("shared", "k/shared")); err != nil {
		t.Fatal(err)
	}
	if got, err := b.GetByKey(ctx, "s3:test", "k/shared"); err != nil || got.ID != "shared" {
		t.Fatalf("the other instance reads %v, %v", got, err)
	}
	if err := b.Create(ctx, testRecord("other", "k/shared")); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("the other instance created a taken key: %v", err)
	}

	const each = 40
	for _, l := range []*Ledger{a, b} {
		for range 4 {
			wg.Go(func() {
				for range each / 4 {
					if _, err := l.Update(ctx, "shared", func(r *storage.Record) error { r.Size++; return nil }); err != nil {
						t.Errorf("Update: %v", err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	for _, l := range []*Ledger{a, b} {
		got, err := l.Get(ctx, "shared")
		if err != nil {
			t.Fatal(err)
		}
		if got.Size != 2*each {
			t.Fatalf("size %d after %d increments from two instances", got.Size, 2*each)
		}
	}

	// A record's events are written in the order of its changes, whichever
	// instance makes them.
	rec := testRecord("ordered", "k/ordered")
	rec.Internal.Notify, rec.Internal.Route = true, "hooks"
	if err := a.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	for i, st := range []storage.Status{storage.StatusConfirmed, storage.StatusRejected, storage.StatusAborted} {
		l := []*Ledger{a, b}[i%2]
		if _, err := l.Update(ctx, "ordered", func(r *storage.Record) error { r.Status = st; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"ordered:upload.confirmed", "ordered:upload.rejected", "ordered:upload.aborted"} {
		evs, err := b.DueEvents(ctx, "hooks", time.Now().Add(time.Minute), 10)
		if err != nil || len(evs) != 1 || evs[0].ID != want {
			t.Fatalf("due %v (%v), want %s alone", evs, err, want)
		}
		if err := a.AckEvent(ctx, want); err != nil {
			t.Fatal(err)
		}
	}
}

// TestServerKilled crashes PostgreSQL under an open Ledger: calls fail with
// storage.ErrUnavailable while it is down, and the same Ledger works again
// once it is back.
func TestServerKilled(t *testing.T) {
	srv := realservers.StartPostgres(t)
	dsn := srv.NewDatabase(t)
	ctx := t.Context()
	for _, mode := range testModes {
		t.Run(mode.name, func(t *testing.T) {
			opts := mode.opts
			opts.Schema = "killed_" + strings.ToLower(mode.name)
			l := openTest(t, dsn, opts)
			if err := l.Create(ctx, testRecord("before", "k/before")); err != nil {
				t.Fatal(err)
			}
			// Several connections in the pool, all of which die.
			var wg sync.WaitGroup
			for i := range 4 {
				wg.Go(func() {
					if _, err := l.Get(ctx, "before"); err != nil {
						t.Errorf("Get %d: %v", i, err)
					}
				})
			}
			wg.Wait()

			srv.Kill(t)
			calls := map[string]func() error{
				"Create": func() error { return l.Create(ctx, testRecord("during", "k/during")) },
				"Get":    func() error { _, err := l.Get(ctx, "before"); return err },
				"Update": func() error {
					_, err := l.Update(ctx, "before", func(r *storage.Record) error { r.Size = 1; return nil })
					return err
				},
				"DueSweep":  func() error { _, err := l.DueSweep(ctx, "s3:test", time.Now(), 10); return err },
				"DueEvents": func() error { _, err := l.DueEvents(ctx, "", time.Now(), 10); return err },
				"AckEvent":  func() error { return l.AckEvent(ctx, "x:upload.confirmed") },
			}
			for name, call := range calls {
				start := time.Now()
				err := call()
				if !errors.Is(err, storage.ErrUnavailable) {
					t.Fatalf("%s while PostgreSQL is down: %v, want storage.ErrUnavailable", name, err)
				}
				if d := time.Since(start); d > 10*time.Second {
					t.Fatalf("%s took %s to fail", name, d)
				}
				t.Logf("%s while down: %v", name, err)
			}

			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			// The same Ledger value, not reopened: the pool reconnects.
			got, err := l.Get(ctx, "before")
			if err != nil || got.ID != "before" {
				t.Fatalf("Get after the restart: %v, %v", got, err)
			}
			if err := l.Create(ctx, testRecord("after", "k/after")); err != nil {
				t.Fatalf("Create after the restart: %v", err)
			}
			if _, err := l.Update(ctx, "after", func(r *storage.Record) error { r.Status = storage.StatusConfirmed; return nil }); err != nil {
				t.Fatalf("Update after the restart: %v", err)
			}
			// The create refused while the server was down did not happen.
			if _, err := l.Get(ctx, "during"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("Get of the create made while down: %v", err)
			}
		})
	}
}

func TestIdentity(t *testing.T) {
	srv := realservers.SharedPostgres(t)
	dsn := srv.NewDatabase(t)
	if _, err := pgx.ParseConfig(dsn); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	// The superuser with a password: trust authentication ignores it.
	withPassword := strings.Replace(dsn, "postgres@", "postgres:s3cret-pw@", 1)
	l := openTest(t, withPassword, Options{Schema: "Mixed Case"})
	db := dsn[strings.LastIndex(dsn, "/")+1 : strings.Index(dsn, "?")]
	want := fmt.Sprintf("postgres://127.0.0.1:%d/%s?schema=Mixed Case", srv.Port, db)
	if l.Identity() != want {
		t.Fatalf("Identity() = %q, want %q", l.Identity(), want)
	}
	if strings.Contains(l.Identity(), "s3cret") {
		t.Fatal("the identity shows the password")
	}
	// A quoted schema name works like any other.
	if err := l.Create(ctx, testRecord("id", "k")); err != nil {
		t.Fatal(err)
	}
	if other := openTest(t, dsn, Options{Schema: "mixed case"}); other.Identity() == l.Identity() {
		t.Fatal("schemas differing in case share an identity")
	} else if _, err := other.Get(ctx, "id"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("another schema sees the record: %v", err)
	}

	for _, bad := range []string{strings.Repeat("x", 64), "a\x00b"} {
		if _, err := Open(ctx, dsn, Options{Schema: bad}); err == nil {
			t.Fatalf("Open with schema %q succeeded", bad)
		}
	}
	// A bad DSN is an error that does not show the password.
	_, err := Open(ctx, "postgres://u:s3cret-pw@127.0.0.1:1/db?sslmode=bogus", Options{})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("Open with a bad dsn: %v", err)
	}
}

func TestBounds(t *testing.T) {
	l := openTest(t, realservers.Postgres(t), Options{})
	ctx := t.Context()
	long := strings.Repeat("k", maxIndexedText)
	cases := []struct {
		name string
		mod  func(r *storage.Record)
		want string
	}{
		{"key too long", func(r *storage.Record) { r.Key = long }, "id, store or key too long"},
		{"id too long", func(r *storage.Record) { r.ID = strings.Repeat("i", maxIDLen+1) }, "id, store or key too long"},
		{"zero byte in store", func(r *storage.Record) { r.Internal.Store = "s3\x00x" }, "store contains a zero byte"},
		{"zero byte in key", func(r *storage.Record) { r.Key = "a\x00b" }, "key contains a zero byte or is not valid UTF-8"},
		{"invalid UTF-8 in subject", func(r *storage.Record) { r.Internal.Subject = "\xff" }, "subject contains a zero byte or is not valid UTF-8"},
		{"zero byte in route", func(r *storage.Record) { r.Internal.Route = "r\x00" }, "route contains a zero byte"},
		{"route too long for an event", func(r *storage.Record) {
			r.Internal.Notify, r.Internal.Route = true, long
		}, "id or route too long for an event"},
	}
	for i, c := range cases {
		rec := testRecord(fmt.Sprintf("b%d", i), fmt.Sprintf("k/%d", i))
		c.mod(rec)
		err := l.Create(ctx, rec)
		if err == nil || !strings.Contains(err.Error(), c.want) || errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("%s: Create: %v, want %q", c.name, err, c.want)
		}
		// The same through Update: refused, and the record unchanged.
		ok := testRecord(fmt.Sprintf("u%d", i), fmt.Sprintf("u/%d", i))
		if err := l.Create(ctx, ok); err != nil {
			t.Fatalf("%s: positive control: %v", c.name, err)
		}
		if c.name == "id too long" {
			continue // an update may not change the id at all
		}
		_, err = l.Update(ctx, ok.ID, func(r *storage.Record) error { c.mod(r); return nil })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Update: %v, want %q", c.name, err, c.want)
		}
		if got, err := l.Get(ctx, ok.ID); err != nil || got.Key != ok.Key || got.Internal.Store != ok.Internal.Store {
			t.Errorf("%s: record after a refused update: %v, %v", c.name, got, err)
		}
	}
	// The largest accepted: a 1024-byte key, as S3 allows, and more.
	big := testRecord(strings.Repeat("i", maxIDLen), strings.Repeat("k", maxIndexedText-len("s3:test")))
	big.Internal.Notify, big.Internal.Route = true, strings.Repeat("r", maxIndexedText-maxIDLen-maxEventSuffix)
	if err := l.Create(ctx, big); err != nil {
		t.Fatalf("Create of the largest record: %v", err)
	}
	if _, err := l.Update(ctx, big.ID, func(r *storage.Record) error { r.Status = storage.StatusConfirmed; return nil }); err != nil {
		t.Fatalf("event of the largest record: %v", err)
	}
	// Strings PostgreSQL cannot hold in text are not found, rather than an
	// error of the server.
	for _, id := range []string{"a\x00b", "\xff"} {
		if _, err := l.Get(ctx, id); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Get(%q): %v", id, err)
		}
		if _, err := l.GetByKey(ctx, "s3:test", id); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetByKey(%q): %v", id, err)
		}
		if err := l.ReplayEvent(ctx, id); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("ReplayEvent(%q): %v", id, err)
		}
	}
	// Any bytes in the fields kept only in the record's data.
	odd := testRecord("odd", "k/odd")
	odd.Filename, odd.Metadata = "a\x00b", map[string]string{"k\x00": "v\x00"}
	if err := l.Create(ctx, odd); err != nil {
		t.Fatal(err)
	}
	if got, err := l.Get(ctx, "odd"); err != nil || got.Filename != odd.Filename || got.Metadata["k\x00"] != "v\x00" {
		t.Fatalf("record with zero bytes in its data: %v, %v", got, err)
	}
	// LastError is stored whatever the receiver answered.
	if err := l.RetryEvent(ctx, big.ID+":"+storage.EventConfirmed, time.Now(), "bad \x00 \xff", true); err != nil {
		t.Fatal(err)
	}
	evs, _, err := l.ParkedEvents(ctx, "", "", 10)
	if err != nil || len(evs) != 1 || evs[0].LastError != "bad \uFFFD \uFFFD" {
		t.Fatalf("parked %v, %v", evs, err)
	}
	if _, _, err := l.ParkedEvents(ctx, "", "not a cursor", 10); !errors.Is(err, storage.ErrBadCursor) {
		t.Fatalf("ParkedEvents with a bad cursor: %v", err)
	}
}

func TestMigrations(t *testing.T) {
	dsn := realservers.Postgres(t)
	ctx := t.Context()
	l := openTest(t, dsn, Options{})
	if err := l.Create(ctx, testRecord("kept", "k")); err != nil {
		t.Fatal(err)
	}
	// Opening again migrates nothing and keeps the data.
	again := openTest(t, dsn, Options{})
	if _, err := again.Get(ctx, "kept"); err != nil {
		t.Fatal(err)
	}
	// A schema from a newer build is refused, not used.
	if _, err := l.pool.Exec(ctx, `INSERT INTO caddyupload.schema_migrations (version) VALUES ($1)`, len(migrations)+1); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctx, dsn, Options{})
	if err == nil || !strings.Contains(err.Error(), "newer than this build knows") {
		t.Fatalf("Open of a newer schema: %v", err)
	}
}

func TestClosed(t *testing.T) {
	for _, mode := range testModes {
		t.Run(mode.name, func(t *testing.T) {
			ctx := t.Context()
			l := openTest(t, realservers.Postgres(t), mode.opts)
			if err := l.Create(ctx, testRecord("a", "a")); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if err := l.Create(ctx, testRecord("b", "b")); !errors.Is(err, ErrClosed) {
				t.Errorf("Create after Close: %v", err)
			}
			if _, err := l.Update(ctx, "a", func(*storage.Record) error { return nil }); !errors.Is(err, ErrClosed) {
				t.Errorf("Update after Close: %v", err)
			}
			if _, err := l.Get(ctx, "a"); !errors.Is(err, ErrClosed) {
				t.Errorf("Get after Close: %v", err)
			}
			if _, err := l.DueEvents(ctx, "", time.Now(), 1); !errors.Is(err, ErrClosed) {
				t.Errorf("DueEvents after Close: %v", err)
			}
		})
	}
}

// TestGroupCommitShares checks that concurrent creates share transactions,
// and that a conflict inside a batch fails only its own create.
func TestGroupCommitShares(t *testing.T) {
	l := openTest(t, realservers.Postgres(t), Options{})
	ctx := t.Context()
	const n = 200
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			// Every tenth clashes with the one before on the key.
			key := fmt.Sprintf("k/%d", i-i%10/9)
			errs[i] = l.Create(ctx, testRecord(fmt.Sprintf("g%03d", i), key))
		})
	}
	wg.Wait()
	conflicts := 0
	for i, err := range errs {
		switch {
		case errors.Is(err, storage.ErrConflict):
			conflicts++
		case err != nil:
			t.Fatalf("create %d: %v", i, err)
		}
	}
	if conflicts != n/10 {
		t.Fatalf("%d conflicts, want %d", conflicts, n/10)
	}
	s := l.Stats()
	if s.Writes != n-n/10 || s.Commits >= s.Writes {
		t.Fatalf("stats %+v: want %d writes in fewer commits", s, n-n/10)
	}
	t.Logf("%d creates in %d commits", s.Writes, s.Commits)
}

// TestUpdatePanics: a panic in the update function reaches the caller,
// rolls the transaction back and leaves the ledger usable; a caller's
// cancelled context is its own error, not an unavailable database.
func TestUpdatePanics(t *testing.T) {
	l := openTest(t, realservers.Postgres(t), Options{MaxConns: 1})
	ctx := t.Context()
	if err := l.Create(ctx, testRecord("p", "k/p")); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if v := recover(); v != "boom" {
				t.Fatalf("recovered %v, want the update function's panic", v)
			}
		}()
		l.Update(ctx, "p", func(r *storage.Record) error { r.Size = 99; panic("boom") })
	}()
	// With one connection, a connection kept by the panicked update would
	// make this wait forever.
	got, err := l.Update(ctx, "p", func(r *storage.Record) error { r.Size++; return nil })
	if err != nil || got.Size != 1 {
		t.Fatalf("update after a panic: %+v, %v", got, err)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := l.Create(cancelled, testRecord("c", "k/c")); !errors.Is(err, context.Canceled) || errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Create with a cancelled context: %v", err)
	}
	if _, err := l.Get(cancelled, "p"); !errors.Is(err, context.Canceled) || errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Get with a cancelled context: %v", err)
	}
}
