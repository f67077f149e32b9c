package pgledger

import (
	"context"
	"encoding/json"
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

func TestQuotaConformance(t *testing.T) {
	dsn := realservers.Postgres(t)
	for _, mode := range testModes {
		t.Run(mode.name, func(t *testing.T) {
			storagetest.RunQuota(t, func(t *testing.T, dir string) storage.QuotaLedger {
				opts := mode.opts
				opts.Schema = schemaFor(dir)
				l := openTest(t, dsn, opts)
				t.Cleanup(func() { auditUsage(t, dsn, opts.Schema) })
				return l
			})
		})
	}
}

// auditUsage checks that every usage row counts exactly the pending
// records of its key.
func auditUsage(t *testing.T, dsn, schema string) {
	t.Helper()
	// Also from a cleanup, when the test's context has ended.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close(ctx)
	s := pgx.Identifier{schema}.Sanitize()
	want := map[string][2]int64{}
	rows, _ := conn.Query(ctx, `SELECT data FROM `+s+`.records WHERE status = 'pending'`)
	recs, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		t.Error(err)
		return
	}
	for _, data := range recs {
		rec, err := decodeRecord(data)
		if err != nil {
			t.Error(err)
			return
		}
		k := string(storage.QuotaKeyOf(rec).Digest())
		w := want[k]
		want[k] = [2]int64{w[0] + 1, w[1] + storage.Charge(rec)}
	}
	rows, _ = conn.Query(ctx, `SELECT key, pending, pending_bytes FROM `+s+`.usage`)
	var (
		key    []byte
		counts [2]int64
	)
	_, err = pgx.ForEachRow(rows, []any{&key, &counts[0], &counts[1]}, func() error {
		if counts != want[string(key)] {
			return fmt.Errorf("usage %x counts %v pending (count, bytes), the records %v", key, counts, want[string(key)])
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// TestQuotaMigration runs the usage migration on a schema whose records
// were written before it: their usage is counted from them, and the key it
// computes in SQL is the one Go computes.
func TestQuotaMigration(t *testing.T) {
	dsn := realservers.Postgres(t)
	ctx := t.Context()
	l := openTest(t, dsn, Options{Schema: "premigration"})
	at := time.Unix(1_950_000_000, 0).UTC()
	rec := func(id string, st storage.Status, size, maxSize int64, subject string) *storage.Record {
		r := &storage.Record{ID: id, Key: "k/" + id, Status: st, Size: size, CreatedAt: at,
			// A filename and metadata that look like the fields read.
			Filename: `x,"size":999999.txt`, Metadata: map[string]string{"size": "5", "max_size": `"max_size":7`},
			Internal: storage.RecordInternal{Store: "s3:m", Route: "r", Subject: subject, Source: "ßrc", Kind: storage.KindPut,
				MaxSize: maxSize, ExpiresAt: at.Add(time.Hour), UpdatedAt: at}}
		if st == storage.StatusConfirmed {
			r.ConfirmedAt = &at
		}
		return r
	}
	for _, r := range []*storage.Record{
		rec("p1", storage.StatusPending, 10, 0, "alice"),
		rec("p2", storage.StatusPending, 0, 500, "alice"),
		rec("c1", storage.StatusConfirmed, 7, 0, "alice"),
		rec("c2", storage.StatusConfirmed, 8, 0, "alice"),
		rec("x1", storage.StatusAborted, 99, 0, "alice"),
		rec("b1", storage.StatusPending, 3, 0, "bøb"),
	} {
		if err := l.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
		// Stored as the versions before the migration stored records.
		j, err := json.Marshal((*storage.RecordWire)(r))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.pool.Exec(ctx, `UPDATE premigration.records SET data = $2 WHERE id = $1`, r.ID, append([]byte{1}, j...)); err != nil {
			t.Fatal(err)
		}
	}
	v := 0
	for i, m := range migrations {
		if strings.Contains(m, ".usage (") {
			v = i + 1
		}
	}
	if v == 0 {
		t.Fatal("no usage migration")
	}
	if _, err := l.pool.Exec(ctx, `DROP TABLE premigration.usage`); err != nil {
		t.Fatal(err)
	}
	if _, err := l.pool.Exec(ctx, fmt.Sprintf(migrations[v-1], "premigration")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		subject                               string
		pending, pendingBytes, uploads, bytes int64
	}{
		{"alice", 2, 510, 2, 15},
		{"bøb", 1, 3, 0, 0},
	} {
		u, err := l.Usage(ctx, storage.QuotaKey{Route: "r", Source: "ßrc", Subject: c.subject})
		if err != nil {
			t.Fatal(err)
		}
		if u.Pending != c.pending || u.PendingBytes != c.pendingBytes || u.Uploads != c.uploads || u.Bytes != c.bytes {
			t.Fatalf("%s after the migration: %+v, want %+v", c.subject, u, c)
		}
	}
	// And it moves on from there.
	if err := l.CreateWithin(ctx, rec("p3", storage.StatusPending, 1, 0, "alice"), storage.Limits{Pending: 3}); err != nil {
		t.Fatal(err)
	}
	if err := l.CreateWithin(ctx, rec("p4", storage.StatusPending, 1, 0, "alice"), storage.Limits{Pending: 3}); err == nil {
		t.Fatal("a fourth pending upload fit a limit of 3")
	}
}

// TestQuotaTwoInstances: creates through two Ledgers on one database (two
// Caddy instances) share one limit exactly, group commit and all.
func TestQuotaTwoInstances(t *testing.T) {
	dsn := realservers.Postgres(t)
	ctx := t.Context()
	a := openTest(t, dsn, Options{Schema: "quota_shared"})
	b := openTest(t, dsn, Options{Schema: "quota_shared"})
	at := time.Now().UTC().Truncate(time.Second)
	lim := storage.Limits{Pending: 6}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created int
	)
	for i := range 40 {
		l := []*Ledger{a, b}[i%2]
		wg.Go(func() {
			id := fmt.Sprintf("two-%02d", i)
			r := &storage.Record{ID: id, Key: "k/" + id, Status: storage.StatusPending, Size: 1, CreatedAt: at,
				Internal: storage.RecordInternal{Store: "s3:t", Route: "r", Subject: "alice", Kind: storage.KindPut, ExpiresAt: at.Add(time.Hour)}}
			var err error
			if i%4 < 2 {
				err = l.CreateWithin(ctx, r, lim)
			} else {
				// Plain creates (group commit) count, and are never refused.
				r.Internal.Subject = "carol"
				err = l.Create(ctx, r)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && r.Internal.Subject == "alice":
				created++
			case err == nil:
			case !errors.Is(err, storage.ErrQuota):
				t.Errorf("create %s: %v", id, err)
			}
		})
	}
	wg.Wait()
	if created != 6 {
		t.Fatalf("%d of alice's creates fit a limit of 6", created)
	}
	for _, c := range []struct {
		subject string
		want    int64
	}{{"alice", 6}, {"carol", 20}} {
		u, err := b.Usage(ctx, storage.QuotaKey{Route: "r", Subject: c.subject})
		if err != nil || u.Pending != c.want || u.PendingBytes != c.want {
			t.Fatalf("%s: %+v, %v; want %d pending", c.subject, u, err, c.want)
		}
	}
	auditUsage(t, dsn, "quota_shared")
}
