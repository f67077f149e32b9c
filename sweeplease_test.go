package caddyupload

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/jackc/pgx/v5"

	"github.com/caddyupload/caddyupload/internal/realservers"
	"github.com/caddyupload/caddyupload/storage"
)

// TestSweepLease: on the PostgreSQL ledger a route's sweeper sweeps only
// while this process holds the route's sweep lease. While another instance
// holds it, a due upload stays pending here; once that lease expires this
// process takes it over and sweeps.
func TestSweepLease(t *testing.T) {
	old := urlSkew
	urlSkew = 0 // the server shares Caddy's clock
	t.Cleanup(func() { urlSkew = old })
	srv := realservers.StartPostgres(t)
	dsn := srv.NewDatabase(t)
	t.Setenv("CU_TEST_PG_DSN", dsn)
	s := newSite(t, oneServer(t))
	js := pgSiteConfig(t, s.caddyfile("url_ttl 1s\n pending_ttl 1s\n sweep_interval 1s"), `{"backend":"postgres","dsn":"{env.CU_TEST_PG_DSN}","schema":"swept"}`)
	if err := caddy.Load(js, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	s.waitServing()

	conn, err := pgx.Connect(t.Context(), dsn) // plain SQL on the leases table
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	status := func(id string) string {
		var rec record
		if resp := s.call("alice", "GET", "/"+id, nil, &rec); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", id, resp.StatusCode)
		}
		return rec.Status
	}
	type lease struct{ name, holder string }
	leases := func() []lease {
		rows, err := conn.Query(t.Context(), `SELECT name, holder FROM swept.leases WHERE name LIKE 'sweep:%'`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []lease
		for rows.Next() {
			var l lease
			if err := rows.Scan(&l.name, &l.holder); err != nil {
				t.Fatal(err)
			}
			out = append(out, l)
		}
		return out
	}

	// Control: this process takes the lease and sweeps.
	first := s.create("alice", "a.txt", 4, "text/plain")
	eventually(t, "the first upload expired", func() bool { return status(first.ID) == "expired" })
	ls := leases()
	if len(ls) != 1 || ls[0].holder != storage.LeaseHolder() || !strings.HasPrefix(ls[0].name, "sweep:s3:") {
		t.Fatalf("sweep leases %v, want one held by this process (%s)", ls, storage.LeaseHolder())
	}
	name := ls[0].name

	// Another instance holds the lease: nothing is swept here.
	if _, err := conn.Exec(t.Context(), `UPDATE swept.leases SET holder = 'another-instance', expires_at = now() + interval '1 hour' WHERE name = $1`, name); err != nil {
		t.Fatal(err)
	}
	second := s.create("alice", "b.txt", 4, "text/plain")
	time.Sleep(4 * time.Second) // several sweep intervals past its expiry
	if st := status(second.ID); st != "pending" {
		t.Fatalf("swept while another instance held the lease: %s", st)
	}
	if ls := leases(); len(ls) != 1 || ls[0].holder != "another-instance" {
		t.Fatalf("leases %v: the other instance's lease was taken before it expired", ls)
	}

	// Its lease expires (the instance died): this process takes over.
	if _, err := conn.Exec(t.Context(), `UPDATE swept.leases SET expires_at = now() - interval '1 second' WHERE name = $1`, name); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the second upload expired", func() bool { return status(second.ID) == "expired" })
	if ls := leases(); len(ls) != 1 || ls[0].holder != storage.LeaseHolder() {
		t.Fatalf("leases %v after the takeover", ls)
	}
}
