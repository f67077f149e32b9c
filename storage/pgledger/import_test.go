package pgledger

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/internal/realservers"
	"github.com/caddyupload/caddyupload/storage"
	"github.com/caddyupload/caddyupload/storage/boltledger"
)

// A bbolt ledger moves to PostgreSQL whole: every record byte for byte,
// every outbox event with its attempts and parked state, and each
// subject's usage; importing again changes nothing.
func TestImportFromBolt(t *testing.T) {
	ctx := context.Background()
	bolt, err := boltledger.Open(filepath.Join(t.TempDir(), "ledger.db"), boltledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	for i := range 40 {
		r := testRecord(fmt.Sprintf("rec-%02d", i), fmt.Sprintf("k/%02d", i))
		r.Size = int64(100 + i)
		r.Internal.Route, r.Internal.Subject, r.Internal.Notify = "files", fmt.Sprintf("user-%d", i%3), true
		r.Metadata = map[string]string{"n": fmt.Sprint(i)}
		if err := bolt.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
		status := []storage.Status{storage.StatusPending, storage.StatusConfirmed, storage.StatusAborted, storage.StatusExpired}[i%4]
		if status != storage.StatusPending {
			if _, err := bolt.Update(ctx, r.ID, func(r *storage.Record) error { r.Status = status; return nil }); err != nil {
				t.Fatal(err)
			}
		}
	}
	due, err := bolt.DueEvents(ctx, "", time.Now().Add(time.Hour), 100)
	if err != nil || len(due) == 0 {
		t.Fatalf("events to move: %d, %v", len(due), err)
	}
	if err := bolt.RetryEvent(ctx, due[0].ID, time.Now().Add(time.Minute), "app down", false); err != nil {
		t.Fatal(err)
	}
	if err := bolt.RetryEvent(ctx, due[1].ID, time.Time{}, "gave up", true); err != nil {
		t.Fatal(err)
	}

	dump := func(x storage.Exporter) (map[string]string, map[string]string) {
		t.Helper()
		recs, evs := map[string]string{}, map[string]string{}
		err := x.Export(ctx, func(r *storage.Record) error {
			b, _ := json.Marshal(struct {
				*storage.Record
				In storage.RecordInternal
			}{r, r.Internal})
			recs[r.ID] = string(b)
			return nil
		}, func(e *storage.Event) error {
			evs[e.ID] = fmt.Sprintf("%s %s %d %q %v %d %d %s", e.Type, e.Route, e.Attempts, e.LastError, e.Parked,
				e.CreatedAt.UnixMicro(), e.NextAttempt.UnixMicro(), e.Record.Status)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return recs, evs
	}
	wantRecs, wantEvs := dump(bolt)

	pg := openTest(t, realservers.Postgres(t), Options{})
	for range 2 { // the second run finds everything there and changes nothing
		var recs []*storage.Record
		var evs []*storage.Event
		if err := bolt.Export(ctx, func(r *storage.Record) error { recs = append(recs, r); return nil },
			func(e *storage.Event) error { evs = append(evs, e); return nil }); err != nil {
			t.Fatal(err)
		}
		if err := pg.Import(ctx, recs, evs); err != nil {
			t.Fatal(err)
		}
		if err := pg.RecountUsage(ctx); err != nil {
			t.Fatal(err)
		}
	}
	gotRecs, gotEvs := dump(pg)
	if len(gotRecs) != 40 || len(gotEvs) != len(wantEvs) {
		t.Fatalf("imported %d records and %d events, want 40 and %d", len(gotRecs), len(gotEvs), len(wantEvs))
	}
	for id, want := range wantRecs {
		if gotRecs[id] != want {
			t.Errorf("record %s:\n got %s\nwant %s", id, gotRecs[id], want)
		}
	}
	for id, want := range wantEvs {
		if gotEvs[id] != want {
			t.Errorf("event %s: got %s, want %s", id, gotEvs[id], want)
		}
	}
	// The outbox works on: the retried event waits, the parked one is listed.
	if parked, _, err := pg.ParkedEvents(ctx, "", "", 10); err != nil || len(parked) != 1 || parked[0].ID != due[1].ID {
		t.Errorf("parked after import: %v %v", parked, err)
	}
	for i := range 3 {
		key := storage.QuotaKey{Route: "files", Subject: fmt.Sprintf("user-%d", i)}
		want, err := bolt.Usage(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pg.Usage(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if got.Pending != want.Pending || got.PendingBytes != want.PendingBytes || got.Uploads != want.Uploads || got.Bytes != want.Bytes {
			t.Errorf("usage of %v: got %+v, want %+v", key, got, want)
		}
	}
	ids := make([]string, 0, len(gotRecs))
	for id := range gotRecs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	// Control: a write after the import works as on any ledger.
	if _, err := pg.Update(ctx, ids[0], func(r *storage.Record) error { r.Status = storage.StatusAborted; return nil }); err != nil {
		t.Errorf("update after import: %v", err)
	}
}
