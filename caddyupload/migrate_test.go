package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

// TestMigrateToPostgres moves a site from its bbolt ledger to PostgreSQL
// with `caddy upload migrate`, as the README tells operators: stop Caddy,
// migrate, point the route at PostgreSQL, start Caddy. The uploads carry
// on: the confirmed one downloads, the pending one completes.
func TestMigrateToPostgres(t *testing.T) {
	t.Parallel()
	pg := realservers.StartPostgres(t)
	dsn := pg.NewDatabase(t)
	s := newSite(t)
	s.start(t)
	confirmed := s.upload(t, "moved along\n")
	pending := s.create(t, "later.txt", 5, "text/plain")

	// While Caddy runs, the file is locked: the migration refuses.
	if out, errOut, ok := caddyUpload(t, nil, "migrate", "--from-bolt", s.Dir+"/ledger.db", "--to-postgres", dsn); ok || !strings.Contains(errOut, "stop Caddy first") {
		t.Fatalf("migrate while Caddy runs: ok %v\n%s%s", ok, out, errOut)
	}
	s.stop(t)
	out := mustUpload(t, "migrate", "--from-bolt", s.Dir+"/ledger.db", "--to-postgres", dsn)
	if !strings.Contains(out, "moved 2 records") {
		t.Fatalf("migrate printed %q", out)
	}

	s.Upload = "ledger postgres {\n\t\t\t\tdsn " + dsn + "\n\t\t\t}"
	s.start(t)
	status, body := s.api(t, http.MethodGet, "/"+confirmed, nil)
	var rec struct{ Status string }
	if status != 200 || json.Unmarshal(body, &rec) != nil || rec.Status != "confirmed" {
		t.Fatalf("confirmed upload after the move: %d %s", status, body)
	}
	if status, loc := s.api(t, http.MethodGet, "/"+confirmed+"/download", nil); status != http.StatusFound || len(loc) == 0 {
		t.Errorf("download after the move: %d", status)
	}
	if st, b := put(t, pending, []byte("hello"), ""); st != http.StatusOK {
		t.Fatalf("PUT of the pending upload: %d %s", st, b)
	}
	if r := s.complete(t, pending.ID); r.Status != "confirmed" {
		t.Errorf("completing the moved pending upload: %q", r.Status)
	}
}
