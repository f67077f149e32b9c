package pgledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddyupload/caddyupload/internal/realservers"
	"github.com/caddyupload/caddyupload/storage"
)

// twoLedgers opens two Ledger values on one schema, as two Caddy instances
// sharing a database have.
func twoLedgers(t *testing.T, schema string) (a, b *Ledger) {
	t.Helper()
	dsn := realservers.Postgres(t)
	return openTest(t, dsn, Options{Schema: schema}), openTest(t, dsn, Options{Schema: schema})
}

func mustLease(t *testing.T, l *Ledger, name, holder string, ttl time.Duration, want bool) {
	t.Helper()
	got, err := l.TryLease(t.Context(), name, holder, ttl)
	if err != nil {
		t.Fatalf("TryLease(%s, %s): %v", name, holder, err)
	}
	if got != want {
		t.Fatalf("TryLease(%s, %s) = %v, want %v", name, holder, got, want)
	}
}

// leaseRow reads a lease as the database holds it: its holder and how long
// it has left by the database's clock.
func leaseRow(t *testing.T, l *Ledger, name string) (holder string, left time.Duration) {
	t.Helper()
	q, err := l.leaseSQL(`SELECT holder, extract(epoch FROM expires_at - now()) FROM $S.leases WHERE name = $1`)
	if err != nil {
		t.Fatal(err)
	}
	var secs float64
	err = l.pool.QueryRow(t.Context(), q, name).Scan(&holder, &secs)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return holder, time.Duration(secs * float64(time.Second))
}

func TestLeaseExclusiveAndRenewed(t *testing.T) {
	a, b := twoLedgers(t, "leases_exclusive")
	const name = "sweep:s3:test:docs"
	mustLease(t, a, name, "A", time.Hour, true)
	// Held: the other instance does not get it, however often it asks.
	for range 3 {
		mustLease(t, b, name, "B", time.Hour, false)
	}
	if h, left := leaseRow(t, b, name); h != "A" || left <= 59*time.Minute || left > time.Hour {
		t.Fatalf("lease row: holder %q, %s left; want A with about 1h by the database's clock", h, left)
	}
	// Another name is another lease.
	mustLease(t, b, "webhook:docs", "B", time.Hour, true)
	mustLease(t, a, "webhook:docs", "A", time.Hour, false)

	// A renewal moves the expiry from the database's now, either way.
	mustLease(t, a, name, "A", 2*time.Hour, true)
	if _, left := leaseRow(t, a, name); left <= 119*time.Minute {
		t.Fatalf("renewed for 2h, %s left", left)
	}
	mustLease(t, a, name, "A", 10*time.Minute, true)
	if _, left := leaseRow(t, a, name); left > 10*time.Minute {
		t.Fatalf("renewed for 10m, %s left", left)
	}
	mustLease(t, b, name, "B", time.Hour, false)
}

func TestLeaseTakenOverAfterExpiry(t *testing.T) {
	a, b := twoLedgers(t, "leases_expiry")
	ctx := t.Context()
	const name = "webhook:docs"

	// A lease whose holder stops renewing it goes to the next taker once
	// the database's clock passes its expiry.
	mustLease(t, a, name, "A", 200*time.Millisecond, true)
	deadline := time.Now().Add(10 * time.Second)
	for {
		held, err := b.TryLease(ctx, name, "B", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("an expired lease was not taken over within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The old holder, back, finds it taken: it must not renew it.
	mustLease(t, a, name, "A", time.Hour, false)
	if h, _ := leaseRow(t, a, name); h != "B" {
		t.Fatalf("holder %q after the takeover, want B", h)
	}

	// The same without waiting: B's lease expires (its row says so) and A
	// takes it; until then A cannot.
	mustLease(t, a, name, "A", time.Hour, false)
	q, err := a.leaseSQL(`UPDATE $S.leases SET expires_at = now() - interval '1 second' WHERE name = $1`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.pool.Exec(ctx, q, name); err != nil {
		t.Fatal(err)
	}
	mustLease(t, a, name, "A", time.Hour, true)
	mustLease(t, b, name, "B", time.Hour, false)
}

func TestLeaseRelease(t *testing.T) {
	a, b := twoLedgers(t, "leases_release")
	ctx := t.Context()
	const name = "sweep:s3:test:docs"
	mustLease(t, a, name, "A", time.Hour, true)
	// Only the holder releases: B's release leaves A's lease.
	if err := b.ReleaseLease(ctx, name, "B"); err != nil {
		t.Fatal(err)
	}
	mustLease(t, b, name, "B", time.Hour, false)
	// A's release hands it over at once, long before its expiry.
	if err := a.ReleaseLease(ctx, name, "A"); err != nil {
		t.Fatal(err)
	}
	mustLease(t, b, name, "B", time.Hour, true)
	mustLease(t, a, name, "A", time.Hour, false)
	// Releasing what one does not hold, or what nobody holds, is no error.
	if err := a.ReleaseLease(ctx, name, "A"); err != nil {
		t.Fatal(err)
	}
	if err := a.ReleaseLease(ctx, "never taken", "A"); err != nil {
		t.Fatal(err)
	}
	if h, _ := leaseRow(t, a, name); h != "B" {
		t.Fatalf("holder %q, want B", h)
	}
}

// TestLeaseOneOfManyTakers: takers racing for a free lease from two
// instances; exactly one gets each lease.
func TestLeaseOneOfManyTakers(t *testing.T) {
	a, b := twoLedgers(t, "leases_race")
	ctx := t.Context()
	for round := range 10 {
		name := fmt.Sprintf("race:%d", round)
		var (
			wg      sync.WaitGroup
			winners atomic.Int32
			start   = make(chan struct{})
		)
		for i := range 16 {
			l := []*Ledger{a, b}[i%2]
			wg.Go(func() {
				<-start
				held, err := l.TryLease(ctx, name, fmt.Sprintf("holder-%d", i), time.Hour)
				if err != nil {
					t.Errorf("TryLease: %v", err)
				}
				if held {
					winners.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		if n := winners.Load(); n != 1 {
			t.Fatalf("%s: %d takers got the lease, want 1", name, n)
		}
	}
}

func TestLeaseBadInput(t *testing.T) {
	l := openTest(t, realservers.Postgres(t), Options{Schema: `odd "schema".name`})
	ctx := t.Context()
	// A schema name that needs quoting works like any other.
	mustLease(t, l, "ok", "A", time.Minute, true)
	for _, c := range []struct {
		name, holder string
		ttl          time.Duration
	}{
		{"x", "", time.Minute},
		{"x", "A", 0},
		{"x", "A", -time.Second},
		{"x\x00y", "A", time.Minute},
		{"x", "A\xff", time.Minute},
	} {
		held, err := l.TryLease(ctx, c.name, c.holder, c.ttl)
		if err == nil || held || errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("TryLease(%q, %q, %s) = %v, %v; want a plain error", c.name, c.holder, c.ttl, held, err)
		}
	}
	if err := l.ReleaseLease(ctx, "x", ""); err == nil {
		t.Error("ReleaseLease with an empty holder: no error")
	}
	// Positive control: the same call with good input.
	mustLease(t, l, "x", "A", time.Minute, true)

	l.Close()
	if _, err := l.TryLease(ctx, "x", "A", time.Minute); !errors.Is(err, ErrClosed) {
		t.Errorf("TryLease after Close: %v", err)
	}
	if err := l.ReleaseLease(ctx, "x", "A"); !errors.Is(err, ErrClosed) {
		t.Errorf("ReleaseLease after Close: %v", err)
	}
}

// TestLeaseMigration opens a schema as a build from before leases left
// it, with a record in it: Open adds the table (and whatever came after),
// leases work and the record stays.
func TestLeaseMigration(t *testing.T) {
	dsn := realservers.Postgres(t)
	ctx := t.Context()
	v := slices.IndexFunc(migrations, func(m string) bool { return strings.Contains(m, ".leases (") }) + 1
	if v == 0 {
		t.Fatal("no migration creates the leases table")
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	const schema = `"before_leases"`
	setup := []string{
		`CREATE SCHEMA ` + schema,
		`CREATE TABLE ` + schema + `.schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
	}
	for i, m := range migrations[:v-1] {
		setup = append(setup, fmt.Sprintf(m, schema), fmt.Sprintf(`INSERT INTO %s.schema_migrations (version) VALUES (%d)`, schema, i+1))
	}
	rec := testRecord("kept", "k/kept")
	data, err := encodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range setup {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if _, err := conn.Exec(ctx, newQueries(schema).insertRecord, recordArgs(rec, data)...); err != nil {
		t.Fatal(err)
	}

	l := openTest(t, dsn, Options{Schema: "before_leases"})
	mustLease(t, l, "sweep:s3:test:docs", "A", time.Minute, true)
	if got, err := l.Get(ctx, "kept"); err != nil || got.ID != "kept" {
		t.Fatalf("record after the migration: %v, %v", got, err)
	}
	var version int
	if err := conn.QueryRow(ctx, `SELECT max(version) FROM before_leases.schema_migrations`).Scan(&version); err != nil || version != len(migrations) {
		t.Fatalf("schema at version %d (%v), want %d", version, err, len(migrations))
	}
}
