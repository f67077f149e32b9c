package caddyupload

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/caddyupload/caddyupload/internal/realservers"
	"github.com/caddyupload/caddyupload/storage"
	"github.com/caddyupload/caddyupload/storage/s3store"
)

// sweepSite is a handler on a bbolt ledger and a bucket of the in-process
// S3 server, with records made directly in the ledger.
type sweepSite struct {
	t  *testing.T
	h  *Handler
	st *s3store.Store
}

func newSweepSite(t *testing.T) *sweepSite {
	srv := realservers.SharedFake(t)
	h := &Handler{Key: "s/{uuid}{ext}"}
	h.setDefaults()
	if err := provisionForTest(t, h); err != nil {
		t.Fatal(err)
	}
	st, err := s3store.New(context.Background(), s3store.Config{
		Endpoint: srv.Endpoint, Region: srv.Region, Bucket: srv.NewBucket(t),
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, UsePathStyle: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.store, h.completing = st, new(recordLocks)
	return &sweepSite{t: t, h: h, st: st}
}

// add stores n records past their deadline, each with its object (or its
// multipart upload), after edit.
func (s *sweepSite) add(n int, kind string, edit func(*storage.Record)) []*storage.Record {
	s.t.Helper()
	ctx := s.t.Context()
	recs := make([]*storage.Record, n)
	for i := range recs {
		recs[i] = s.h.newRecord(identity{Subject: "alice"}, upload{filename: "a.txt", size: 1, mimeType: "text/plain", ext: ".txt"}, kind)
		recs[i].Internal.ExpiresAt = time.Now().Add(-time.Hour)
		if edit != nil {
			edit(recs[i])
		}
	}
	err := inParallel(recs, func(rec *storage.Record) error {
		if kind == storage.KindMultipart {
			id, err := s.st.CreateMultipart(ctx, rec.Key, "text/plain")
			if err != nil {
				return err
			}
			rec.Internal.UploadID = id
		} else if _, err := s.st.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.st.Bucket()), Key: &rec.Key, Body: strings.NewReader("x")}); err != nil {
			return err
		}
		return s.h.ledger.Create(ctx, rec)
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return recs
}

// gone reports whether rec's object (or multipart upload) is gone.
func (s *sweepSite) gone(rec *storage.Record) bool {
	s.t.Helper()
	var err error
	if rec.Internal.UploadID != "" {
		_, err = s.st.ListParts(s.t.Context(), rec.Key, rec.Internal.UploadID)
	} else {
		_, err = s.st.Head(s.t.Context(), rec.Key)
	}
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		s.t.Fatal(err)
	}
	return err != nil
}

func (s *sweepSite) get(id string) *storage.Record {
	s.t.Helper()
	rec, err := s.h.ledger.Get(s.t.Context(), id)
	if err != nil {
		s.t.Fatal(err)
	}
	return rec
}

// plainLedger hides the ledger's optional capabilities (BatchUpdater).
type plainLedger struct{ storage.Ledger }

// TestSweepManyBatches: a backlog of several listing batches of pending
// records, closed records and multipart uploads is swept in one sweep,
// claims in chunks, deletions beside them. Every pending record ends
// expired (still due for the recheck of late writes), every object and
// multipart upload is gone, the closed records are released, and a
// confirmed upload beside them keeps its object (control). The same holds
// on a ledger that updates one record at a time.
func TestSweepManyBatches(t *testing.T) {
	for _, batched := range []bool{true, false} {
		t.Run(fmt.Sprintf("batched=%v", batched), func(t *testing.T) {
			s := newSweepSite(t)
			if _, ok := s.h.ledger.(storage.BatchUpdater); !ok {
				t.Fatal("the bbolt ledger is not a BatchUpdater")
			}
			if !batched {
				s.h.ledger = plainLedger{s.h.ledger}
			}
			pending := s.add(2*sweepBatch+sweepChunk/2, storage.KindPut, nil)
			multipart := s.add(3, storage.KindMultipart, nil)
			closed := s.add(sweepChunk+7, storage.KindPut, func(r *storage.Record) {
				r.Status, r.Internal.Recheck = storage.StatusAborted, true
			})
			confirmed := s.add(1, storage.KindPut, func(r *storage.Record) {
				now := time.Now().UTC()
				r.Status, r.ConfirmedAt = storage.StatusConfirmed, &now
			})[0]

			n, err := s.h.sweep(t.Context(), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if want := len(pending) + len(multipart); n != want {
				t.Fatalf("expired %d, want %d", n, want)
			}
			for _, rec := range append(pending, multipart...) {
				cur := s.get(rec.ID)
				if cur.Status != storage.StatusExpired || !cur.Internal.Recheck || !cur.Internal.ExpiresAt.After(time.Now()) {
					t.Fatalf("%s after the sweep: %s, recheck %v at %s", rec.ID, cur.Status, cur.Internal.Recheck, cur.Internal.ExpiresAt)
				}
				if !s.gone(rec) {
					t.Fatalf("%s (%s) still in storage", rec.ID, rec.Internal.Kind)
				}
			}
			for _, rec := range closed {
				if cur := s.get(rec.ID); cur.Status != storage.StatusAborted || cur.Internal.Recheck {
					t.Fatalf("closed %s after the sweep: %s, recheck %v", rec.ID, cur.Status, cur.Internal.Recheck)
				}
				if !s.gone(rec) {
					t.Fatalf("closed %s still in storage", rec.ID)
				}
			}
			if s.gone(confirmed) || s.get(confirmed.ID).Status != storage.StatusConfirmed {
				t.Fatal("the sweep touched a confirmed upload")
			}
			// Nothing is left due now.
			if due, err := s.h.ledger.DueSweep(t.Context(), s.h.store.ID(), time.Now(), 10); err != nil || len(due) != 0 {
				t.Fatalf("still due after the sweep: %d (%v)", len(due), err)
			}
		})
	}
}

// failingDeletes fails the DeleteObjects calls that name a key in bad.
type failingDeletes struct {
	storage.ObjectStore
	bad map[string]bool
}

func (f *failingDeletes) Delete(ctx context.Context, keys ...string) error {
	for _, k := range keys {
		if f.bad[k] {
			return fmt.Errorf("s3 delete: %w: injected", storage.ErrUnavailable)
		}
	}
	return f.ObjectStore.Delete(ctx, keys...)
}

// TestSweepDeleteFailureLosesNothing: when a DeleteObjects call fails the
// sweep reports it, and no record is lost or released with its object
// still stored: a pending record is still pending or expired and due for
// the recheck, a closed one keeps its Recheck. Once storage works again
// (control: the same records, the same sweeps) every object is deleted and
// every record released.
func TestSweepDeleteFailureLosesNothing(t *testing.T) {
	s := newSweepSite(t)
	pending := s.add(3*sweepChunk, storage.KindPut, nil)
	closed := s.add(sweepChunk, storage.KindPut, func(r *storage.Record) {
		r.Status, r.Internal.Recheck = storage.StatusRejected, true
	})
	f := &failingDeletes{ObjectStore: s.h.store, bad: map[string]bool{}}
	for _, rec := range append(pending[len(pending)/2:], closed[len(closed)/2:]...) {
		f.bad[rec.Key] = true
	}
	s.h.store = f

	n, err := s.h.sweep(t.Context(), time.Now())
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("sweep with failing deletes: %d, %v; want the storage error", n, err)
	}
	for _, rec := range pending {
		cur := s.get(rec.ID)
		if cur.Status != storage.StatusPending && (cur.Status != storage.StatusExpired || !cur.Internal.Recheck) {
			t.Fatalf("%s: %s, recheck %v", rec.ID, cur.Status, cur.Internal.Recheck)
		}
	}
	for _, rec := range closed {
		if cur := s.get(rec.ID); !cur.Internal.Recheck && !s.gone(rec) {
			t.Fatalf("closed %s released with its object still stored", rec.ID)
		}
	}
	for _, rec := range append(pending[len(pending)/2:], closed[len(closed)/2:]...) {
		if s.gone(rec) {
			t.Fatalf("%s deleted although its deletion failed", rec.ID)
		}
	}

	// Storage works again; past the recheck deadlines sweeps finish.
	clear(f.bad)
	for _, later := range []time.Time{time.Now().Add(urlSkew + time.Hour), time.Now().Add(2*urlSkew + 3*time.Hour)} {
		if _, err := s.h.sweep(t.Context(), later); err != nil {
			t.Fatal(err)
		}
	}
	for _, rec := range append(pending, closed...) {
		cur := s.get(rec.ID)
		if !s.gone(rec) || cur.Status == storage.StatusPending || cur.Internal.Recheck {
			t.Fatalf("%s after storage came back: %s, recheck %v, object gone %v", rec.ID, cur.Status, cur.Internal.Recheck, s.gone(rec))
		}
	}
}
