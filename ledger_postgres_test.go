package caddyupload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddyupload/caddyupload/internal/realservers"
	"github.com/caddyupload/caddyupload/storage"
	"github.com/caddyupload/caddyupload/storage/pgledger"
)

func TestPostgresLedgerCaddyfile(t *testing.T) {
	// Inside an upload block, followed by another directive that must
	// still be seen.
	d := caddyfile.NewTestDispenser(`upload {
		ledger postgres {
			dsn {env.UPLOAD_PG_DSN}
			schema uploads_eu
			max_conns 10
		}
		name after
	}`)
	d.Next()
	var got *PostgresLedger
	var after []string
	for d.NextBlock(0) {
		switch d.Val() {
		case "ledger":
			if !d.NextArg() || d.Val() != "postgres" {
				t.Fatalf("at %q", d.Val())
			}
			var err error
			if got, err = parsePostgresLedger(d); err != nil {
				t.Fatal(err)
			}
		default:
			after = append(after, d.Val())
			d.RemainingArgs()
		}
	}
	if got == nil || got.DSN != "{env.UPLOAD_PG_DSN}" || got.Schema != "uploads_eu" || got.MaxConns != 10 {
		t.Fatalf("parsed %+v", got)
	}
	if strings.Join(after, ",") != "name" {
		t.Fatalf("directives after the ledger block: %v", after)
	}
	// The JSON keeps the placeholder, not what it stands for.
	t.Setenv("UPLOAD_PG_DSN", "postgres://u:s3cret@db/x")
	js, err := json.Marshal(caddyconfig.JSONModuleObject(got, "backend", "postgres", nil))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"backend":"postgres","dsn":"{env.UPLOAD_PG_DSN}","max_conns":10,"schema":"uploads_eu"}`; string(js) != want {
		t.Fatalf("JSON %s, want %s", js, want)
	}

	for _, bad := range []struct{ in, want string }{
		{"ledger postgres", "dsn is required"},
		{"ledger postgres {\nschema x\n}", "dsn is required"},
		{"ledger postgres extra {\ndsn x\n}", "wrong argument count"},
		{"ledger postgres {\ndsn\n}", "wrong argument count"},
		{"ledger postgres {\ndsn a b\n}", "wrong argument count"},
		{"ledger postgres {\ndsn x\nmax_conns 0\n}", "max_conns: want a positive number"},
		{"ledger postgres {\ndsn x\nmax_conns lots\n}", "max_conns: want a positive number"},
		{"ledger postgres {\ndsn x\npool 3\n}", `unknown subdirective "pool"`},
	} {
		d := caddyfile.NewTestDispenser(bad.in)
		d.Next()
		d.NextArg()
		if _, err := parsePostgresLedger(d); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: %v, want %q", bad.in, err, bad.want)
		}
	}
}

func provisionPG(t *testing.T, p *PostgresLedger) error {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	return p.Provision(ctx)
}

// TestPostgresLedgerProvision: placeholders in the DSN, one pool shared by
// the configs of a reload, the outbox registered under the identity.
func TestPostgresLedgerProvision(t *testing.T) {
	srv := realservers.StartPostgres(t)
	dsn := srv.NewDatabase(t)
	t.Setenv("CU_TEST_PG_DSN", dsn)
	ctx := t.Context()

	old := &PostgresLedger{DSN: "{env.CU_TEST_PG_DSN}"}
	if err := provisionPG(t, old); err != nil {
		t.Fatal(err)
	}
	identity := old.ledger.Identity()
	if !strings.HasPrefix(identity, "postgres://127.0.0.1:") || !strings.HasSuffix(identity, "?schema=caddyupload") {
		t.Fatalf("identity %q", identity)
	}
	registered := func() bool {
		for _, o := range outboxes() {
			if o.name == identity {
				return true
			}
		}
		return false
	}
	if !registered() {
		t.Fatal("outbox not registered")
	}
	if err := old.Ledger().Create(ctx, &storage.Record{ID: "r1", Key: "k1", Status: storage.StatusPending,
		Internal: storage.RecordInternal{Store: "s3:x", ExpiresAt: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}

	// A reload provisions the new config before the old one is cleaned up:
	// both share one ledger, which outlives the old config.
	reloaded := &PostgresLedger{DSN: "{env.CU_TEST_PG_DSN}"}
	if err := provisionPG(t, reloaded); err != nil {
		t.Fatal(err)
	}
	if reloaded.ledger != old.ledger {
		t.Fatal("a reload opened a second pool")
	}
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := reloaded.Ledger().Get(ctx, "r1"); err != nil {
		t.Fatalf("the reloaded config after the old one's cleanup: %v", err)
	}
	if !registered() {
		t.Fatal("outbox unregistered while a config still uses it")
	}

	// Another schema in the same database is another ledger.
	other := &PostgresLedger{DSN: "{env.CU_TEST_PG_DSN}", Schema: "other", MaxConns: 2}
	if err := provisionPG(t, other); err != nil {
		t.Fatal(err)
	}
	if other.ledger == reloaded.ledger || other.ledger.Identity() == identity {
		t.Fatal("two schemas share a ledger")
	}
	if _, err := other.Ledger().Get(ctx, "r1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("another schema sees the record: %v", err)
	}
	if err := other.Cleanup(); err != nil {
		t.Fatal(err)
	}

	// The last user closes the pool.
	if err := reloaded.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := reloaded.ledger.Get(ctx, "r1"); !errors.Is(err, pgledger.ErrClosed) {
		t.Fatalf("ledger after the last cleanup: %v", err)
	}
	if registered() {
		t.Fatal("outbox still registered after the last cleanup")
	}

	// Errors say what is wrong without showing the password.
	t.Setenv("CU_TEST_PG_EMPTY", "")
	for _, c := range []struct {
		p    PostgresLedger
		want string
	}{
		{PostgresLedger{DSN: "{env.CU_TEST_PG_EMPTY}"}, `dsn is required and "{env.CU_TEST_PG_EMPTY}" is empty`},
		{PostgresLedger{}, "dsn is required"},
		{PostgresLedger{DSN: fmt.Sprintf("postgres://postgres:s3cret-pw@127.0.0.1:%d/nope?connect_timeout=5", realservers.FreePort(t))}, "connect"},
		{PostgresLedger{DSN: dsn, MaxConns: -1}, "max_conns -1 out of range"},
	} {
		err := provisionPG(t, &c.p)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Provision(%+v): %v, want %q", c.p, err, c.want)
		}
		if err := c.p.Cleanup(); err != nil {
			t.Errorf("Cleanup after a failed Provision: %v", err)
		}
	}
}

// TestPostgresLedgerSite runs uploads through Caddy with the PostgreSQL
// ledger; with the database down, the API answers 503 storage_unavailable,
// and it works again, without a reload, once the database is back.
func TestPostgresLedgerSite(t *testing.T) {
	srv := realservers.StartPostgres(t)
	dsn := srv.NewDatabase(t)
	t.Setenv("CU_TEST_PG_DSN", dsn)
	s := newSite(t, oneServer(t))
	js := pgSiteConfig(t, s.caddyfile(""), `{"backend":"postgres","dsn":"{env.CU_TEST_PG_DSN}","schema":"site"}`)
	if err := caddy.Load(js, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	s.waitServing()

	body := []byte("hello")
	c := s.create("alice", "a.txt", int64(len(body)), "text/plain")
	if st := s.put(c, body, nil); st != http.StatusOK {
		t.Fatalf("PUT: %d", st)
	}
	var rec record
	if resp := s.call("alice", "POST", "/"+c.ID+"/complete", nil, &rec); resp.StatusCode != http.StatusOK || rec.Status != "confirmed" {
		t.Fatalf("complete: %d %+v", resp.StatusCode, rec)
	}
	// Another instance on the same database sees the upload.
	other, err := pgledger.Open(t.Context(), dsn, pgledger.Options{Schema: "site"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if got, err := other.Get(t.Context(), c.ID); err != nil || got.Status != storage.StatusConfirmed || got.Key != c.Key {
		t.Fatalf("the record as another instance reads it: %+v, %v", got, err)
	}

	srv.Kill(t)
	expectError(t, s.call("alice", "POST", "/", map[string]any{"filename": "b.txt", "size": 3, "type": "text/plain"}, nil), 503, "storage_unavailable")
	expectError(t, s.call("alice", "GET", "/"+c.ID, nil, nil), 503, "storage_unavailable")

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	c2 := s.create("alice", "b.txt", 3, "text/plain")
	if resp := s.call("alice", "GET", "/"+c2.ID, nil, &rec); resp.StatusCode != http.StatusOK || rec.Status != "pending" {
		t.Fatalf("record after the restart: %d %+v", resp.StatusCode, rec)
	}
}

// pgSiteConfig adapts a test site's Caddyfile and puts ledger (module JSON)
// where the bolt ledger was.
func pgSiteConfig(t *testing.T, cfg, ledger string) []byte {
	t.Helper()
	js, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	replaced := 0
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if m, ok := c.(map[string]any); ok && k == "ledger" && m["backend"] == "bolt" {
					v[k] = json.RawMessage(ledger)
					replaced++
					continue
				}
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(doc)
	if replaced != 1 {
		t.Fatalf("%d bolt ledgers in the config, want 1", replaced)
	}
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "{env.CU_TEST_PG_DSN}") || strings.Contains(string(out), dsnOf(t)) {
		t.Fatal("the config holds the DSN instead of its placeholder")
	}
	return out
}

func dsnOf(t *testing.T) string {
	t.Helper()
	return strings.TrimSpace(caddy.NewReplacer().ReplaceAll("{env.CU_TEST_PG_DSN}", ""))
}
