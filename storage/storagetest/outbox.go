package storagetest

import (
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// OutboxLedger is a ledger with an outbox.
type OutboxLedger = interface {
	storage.Ledger
	storage.Outbox
}

// RunOutbox is the conformance suite of storage.Outbox. open works as for
// RunLedger: a fresh directory per subtest, and opening it again after
// Close gives back everything written before, events included.
func RunOutbox(t *testing.T, open func(t *testing.T, dir string) interface {
	storage.Ledger
	storage.Outbox
}) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, h *outboxHarness)
	}{
		{"EventPerTransition", outboxTestTransitions},
		{"EveryFinalStatus", outboxTestFinalStatuses},
		{"DueEvents", outboxTestDueEvents},
		{"Retry", outboxTestRetry},
		{"ParkAndReplay", outboxTestParkReplay},
		{"Ack", outboxTestAck},
		{"Persistence", outboxTestPersistence},
		{"Concurrent", outboxTestConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &outboxHarness{newHarness(t, open)}
			tc.run(t, h)
		})
	}
}

type outboxHarness struct{ *harness[OutboxLedger] }

func (h *outboxHarness) setStatus(id string, s storage.Status) *storage.Record {
	h.t.Helper()
	return h.update(id, func(r *storage.Record) { r.Status = s })
}

func (h *outboxHarness) retry(id string, next time.Time, lastErr string, park bool) {
	h.t.Helper()
	if err := h.l.RetryEvent(h.t.Context(), id, next, lastErr, park); err != nil {
		h.t.Fatalf("RetryEvent(%s): %v", id, err)
	}
}

// due returns the events DueEvents lists and checks what every one of them
// must satisfy.
func (h *outboxHarness) due(route string, t time.Time, limit int) []*storage.Event {
	h.t.Helper()
	evs, err := h.l.DueEvents(h.t.Context(), route, t, limit)
	if err != nil {
		h.t.Fatalf("DueEvents(%q, %s, %d): %v", route, t, limit, err)
	}
	if len(evs) > limit {
		h.t.Fatalf("DueEvents(%q, %s, %d) listed %d events", route, t, limit, len(evs))
	}
	for i, ev := range evs {
		if ev.Route != route || ev.Parked || ev.NextAttempt.After(t) {
			h.t.Fatalf("DueEvents(%q, %s) listed %s", route, t, outboxDump(ev))
		}
		if i > 0 && ev.NextAttempt.Before(evs[i-1].NextAttempt) {
			h.t.Fatalf("DueEvents(%q) out of order: %s before %s", route, outboxDump(evs[i-1]), outboxDump(ev))
		}
	}
	return evs
}

// wantDue asserts the ids DueEvents lists, in order.
func (h *outboxHarness) wantDue(route string, t time.Time, limit int, ids ...string) []*storage.Event {
	h.t.Helper()
	evs := h.due(route, t, limit)
	if got := outboxIDs(evs); !slices.Equal(got, ids) {
		h.t.Fatalf("DueEvents(%q, %s, %d) = %v, want %v", route, t, limit, got, ids)
	}
	return evs
}

// wantParked asserts the ids ParkedEvents lists, in any order.
func (h *outboxHarness) wantParked(route string, limit int, ids ...string) []*storage.Event {
	h.t.Helper()
	evs, err := h.l.ParkedEvents(h.t.Context(), route, limit)
	if err != nil {
		h.t.Fatalf("ParkedEvents(%q, %d): %v", route, limit, err)
	}
	for _, ev := range evs {
		if !ev.Parked || (route != "" && ev.Route != route) {
			h.t.Fatalf("ParkedEvents(%q) listed %s", route, outboxDump(ev))
		}
	}
	got := outboxIDs(evs)
	slices.Sort(got)
	want := slices.Sorted(slices.Values(ids))
	if !slices.Equal(got, want) {
		h.t.Fatalf("ParkedEvents(%q, %d) = %v, want %v", route, limit, got, want)
	}
	return evs
}

// everything is a bound after every time the suite uses.
var everything = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)

// notifyRecord is a pending record of route that asks for events.
func notifyRecord(id, route string) *storage.Record {
	r := ledgerRecord(id, "s3:a", "n/"+id, ledgerAt(time.Hour))
	r.Internal.Route = route
	r.Internal.Notify = true
	return r
}

func outboxIDs(evs []*storage.Event) []string {
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	return ids
}

func outboxDump(ev *storage.Event) string {
	if ev == nil {
		return "<nil>"
	}
	c := *ev
	c.Record = nil
	return fmt.Sprintf("%+v (record %s)", c, ledgerDump(ev.Record))
}

// outboxNormalize makes events comparable across backends and reopenings.
func outboxNormalize(ev *storage.Event) storage.Event {
	c := *ev
	c.CreatedAt, c.NextAttempt = c.CreatedAt.UTC(), c.NextAttempt.UTC()
	if c.Record != nil {
		c.Record = ledgerNormalize(c.Record)
	}
	return c
}

// wantFresh asserts a new event of rec's change made between before and
// after.
func wantFresh(t *testing.T, ev *storage.Event, rec *storage.Record, before, after time.Time) {
	t.Helper()
	typ := storage.EventFor(rec.Status)
	// Backends may keep microseconds only.
	before = before.Truncate(time.Microsecond)
	if ev.ID != rec.ID+":"+typ || ev.Type != typ || ev.Route != rec.Internal.Route || ev.Attempts != 0 || ev.Parked || ev.LastError != "" ||
		ev.CreatedAt.Before(before) || ev.CreatedAt.After(after) || !ev.NextAttempt.Equal(ev.CreatedAt) {
		t.Fatalf("event of %s becoming %s between %s and %s: %s", rec.ID, rec.Status, before, after, outboxDump(ev))
	}
	ledgerWantEqual(t, "event record", ev.Record, rec)
}

func outboxTestTransitions(t *testing.T, h *outboxHarness) {
	h.create(notifyRecord("n1", "hooks"))
	h.update("n1", func(r *storage.Record) { r.Metadata = map[string]string{"k": "v"} })
	h.update("n1", func(r *storage.Record) { r.Internal.ExpiresAt = ledgerAt(2 * time.Hour) })
	h.wantDue("hooks", everything, 100)

	before := time.Now()
	confirmed := h.setStatus("n1", storage.StatusConfirmed)
	after := time.Now()
	evs := h.wantDue("hooks", everything, 100, "n1:upload.confirmed")
	wantFresh(t, evs[0], confirmed, before, after)

	// Changes that keep the status add nothing and leave the event alone.
	h.update("n1", func(r *storage.Record) { r.Size = 42 })
	h.setStatus("n1", storage.StatusConfirmed)
	again := h.wantDue("hooks", everything, 100, "n1:upload.confirmed")
	if !reflect.DeepEqual(outboxNormalize(again[0]), outboxNormalize(evs[0])) {
		t.Fatalf("event changed by an update that kept the status:\n got %s\nwant %s", outboxDump(again[0]), outboxDump(evs[0]))
	}
	// The answer is a copy.
	again[0].Record.Filename = "scribbled"
	again[0].Record.Metadata["k"] = "scribbled"
	h.wantDue("hooks", everything, 100, "n1:upload.confirmed")
	wantFresh(t, h.due("hooks", everything, 1)[0], confirmed, before, after)

	// A second final status is a second event.
	before = time.Now()
	aborted := h.setStatus("n1", storage.StatusAborted)
	after = time.Now()
	evs = h.due("hooks", everything, 100)
	if ids := outboxIDs(evs); !slices.Equal(slices.Sorted(slices.Values(ids)), []string{"n1:upload.aborted", "n1:upload.confirmed"}) {
		t.Fatalf("events %v, want n1:upload.confirmed and n1:upload.aborted", ids)
	}
	for _, ev := range evs {
		if ev.Type == storage.EventAborted {
			wantFresh(t, ev, aborted, before, after)
		}
	}

	// Records without Notify never produce events, whatever they go through.
	h.create(ledgerRecord("plain", "s3:a", "plain", ledgerAt(time.Hour)))
	h.update("plain", func(r *storage.Record) { r.Internal.Route = "hooks" })
	h.setStatus("plain", storage.StatusConfirmed)
	h.setStatus("plain", storage.StatusAborted)
	plainFinal := ledgerRecord("plain-final", "s3:a", "plain-final", ledgerAt(time.Hour))
	plainFinal.Internal.Route, plainFinal.Status = "hooks", storage.StatusRejected
	h.create(plainFinal)

	// A notifying record created pending reports nothing; created in a
	// final status, it reports that status at once.
	h.create(notifyRecord("n2", "hooks"))
	born := notifyRecord("n3", "hooks")
	born.Status, born.Internal.Reason = storage.StatusRejected, "bad magic"
	before = time.Now()
	h.create(born)
	after = time.Now()

	evs = h.due("hooks", everything, 100)
	ids := slices.Sorted(slices.Values(outboxIDs(evs)))
	if want := []string{"n1:upload.aborted", "n1:upload.confirmed", "n3:upload.rejected"}; !slices.Equal(ids, want) {
		t.Fatalf("events %v, want %v", ids, want)
	}
	for _, ev := range evs {
		if ev.ID == "n3:upload.rejected" {
			wantFresh(t, ev, born, before, after)
		}
	}
	h.wantDue("", everything, 100)
	h.wantDue("avatars", everything, 100)
}

func outboxTestFinalStatuses(t *testing.T, h *outboxHarness) {
	var want []string
	for _, s := range []storage.Status{storage.StatusConfirmed, storage.StatusExpired, storage.StatusRejected, storage.StatusAborted} {
		id := "to-" + string(s)
		h.create(notifyRecord(id, "r"))
		rec := h.setStatus(id, s)
		if rec.Status != s {
			t.Fatalf("Update returned status %s", rec.Status)
		}
		want = append(want, id+":"+storage.EventFor(s))
	}
	evs := h.due("r", everything, 100)
	for _, ev := range evs {
		if ev.Record.ID+":"+ev.Type != ev.ID || storage.EventFor(ev.Record.Status) != ev.Type {
			t.Errorf("event %s", outboxDump(ev))
		}
	}
	if got := slices.Sorted(slices.Values(outboxIDs(evs))); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

// outboxEvents gives each of ids (record ids) of route a confirmed event
// and returns the event ids.
func outboxEvents(h *outboxHarness, route string, ids ...string) []string {
	h.t.Helper()
	out := make([]string, len(ids))
	for i, id := range ids {
		h.create(notifyRecord(id, route))
		h.setStatus(id, storage.StatusConfirmed)
		out[i] = id + ":" + storage.EventConfirmed
	}
	return out
}

func outboxTestDueEvents(t *testing.T, h *outboxHarness) {
	a := outboxEvents(h, "a", "a1", "a2", "a3", "a4")
	ab := outboxEvents(h, "ab", "ab1")
	b := outboxEvents(h, "b", "b1")
	h.retry(a[0], ledgerAt(3*time.Minute), "x", false)
	h.retry(a[1], ledgerAt(time.Minute), "x", false)
	h.retry(a[2], ledgerAt(2*time.Minute), "x", false)
	h.retry(a[3], ledgerAt(4*time.Minute), "x", false)
	h.retry(ab[0], ledgerAt(0), "x", false)

	h.wantDue("a", ledgerAt(0), 100)
	h.wantDue("a", ledgerAt(2*time.Minute-time.Nanosecond), 100, a[1])
	// The bound is inclusive.
	h.wantDue("a", ledgerAt(2*time.Minute), 100, a[1], a[2])
	h.wantDue("a", ledgerAt(2*time.Minute), 1, a[1])
	h.wantDue("a", ledgerAt(2*time.Minute), 0)
	h.wantDue("a", everything, 100, a[1], a[2], a[0], a[3])
	h.wantDue("ab", everything, 100, ab...)
	h.wantDue("b", time.Now().Add(time.Minute), 100, b...)
	h.wantDue("b", time.Now().Add(-time.Hour), 100)
	h.wantDue("", everything, 100)
	h.wantDue("c", everything, 100)
}

func outboxTestRetry(t *testing.T, h *outboxHarness) {
	ids := outboxEvents(h, "r", "x")
	h.retry(ids[0], ledgerAt(time.Minute), "status 500", false)
	ev := h.wantDue("r", everything, 10, ids[0])[0]
	if ev.Attempts != 1 || ev.LastError != "status 500" || !ev.NextAttempt.Equal(ledgerAt(time.Minute)) {
		t.Fatalf("after one retry: %s", outboxDump(ev))
	}
	h.wantDue("r", ledgerAt(time.Minute-time.Microsecond), 10)

	// An earlier time moves it forward again.
	h.retry(ids[0], ledgerAt(-time.Minute), "connection refused", false)
	ev = h.wantDue("r", ledgerAt(-time.Minute), 10, ids[0])[0]
	if ev.Attempts != 2 || ev.LastError != "connection refused" || !ev.NextAttempt.Equal(ledgerAt(-time.Minute)) {
		t.Fatalf("after two retries: %s", outboxDump(ev))
	}
	h.wantParked("", 10)

	ledgerWantErr(t, "RetryEvent of a missing event",
		h.l.RetryEvent(t.Context(), "missing:upload.confirmed", ledgerBase, "x", false), storage.ErrNotFound)
}

func outboxTestParkReplay(t *testing.T, h *outboxHarness) {
	ids := outboxEvents(h, "r", "p1", "p2", "keep")
	other := outboxEvents(h, "s", "s1")
	h.retry(ids[0], ledgerAt(time.Minute), "status 500", false)
	h.retry(ids[0], ledgerAt(time.Minute), "status 503", true)
	h.retry(ids[1], ledgerAt(time.Minute), "timeout", true)
	h.retry(other[0], ledgerAt(time.Minute), "status 404", true)

	h.wantDue("r", everything, 100, ids[2])
	h.wantDue("s", everything, 100)
	evs := h.wantParked("r", 100, ids[0], ids[1])
	for _, ev := range evs {
		if ev.ID == ids[0] && (ev.Attempts != 2 || ev.LastError != "status 503") {
			t.Fatalf("parked: %s", outboxDump(ev))
		}
	}
	h.wantParked("s", 100, other...)
	h.wantParked("", 100, ids[0], ids[1], other[0])
	if evs, err := h.l.ParkedEvents(t.Context(), "", 2); err != nil || len(evs) != 2 {
		t.Fatalf("ParkedEvents with limit 2: %d events, %v", len(evs), err)
	}
	h.wantParked("", 0)
	h.wantParked("nobody", 100)

	before := time.Now()
	if err := h.l.ReplayEvent(t.Context(), ids[0]); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	h.wantParked("r", 100, ids[1])
	var replayed *storage.Event
	for _, ev := range h.due("r", everything, 100) {
		if ev.ID == ids[0] {
			replayed = ev
		}
	}
	if replayed == nil || replayed.Parked || replayed.Attempts != 0 || replayed.LastError != "status 503" ||
		replayed.NextAttempt.Before(before.Truncate(time.Microsecond)) || replayed.NextAttempt.After(after) {
		t.Fatalf("replayed between %s and %s: %s", before, after, outboxDump(replayed))
	}
	if got := h.due("r", after, 100); !slices.Contains(outboxIDs(got), ids[0]) {
		t.Fatalf("replayed event not due at once: %v", outboxIDs(got))
	}
	ledgerWantErr(t, "ReplayEvent of a missing event", h.l.ReplayEvent(t.Context(), "missing:upload.confirmed"), storage.ErrNotFound)

	// A parked event can be dropped too.
	if err := h.l.AckEvent(t.Context(), ids[1]); err != nil {
		t.Fatal(err)
	}
	h.wantParked("", 100, other[0])
}

func outboxTestAck(t *testing.T, h *outboxHarness) {
	ids := outboxEvents(h, "r", "a1", "a2")
	for range 2 {
		if err := h.l.AckEvent(t.Context(), ids[0]); err != nil {
			t.Fatalf("AckEvent: %v", err)
		}
	}
	if err := h.l.AckEvent(t.Context(), "missing:upload.confirmed"); err != nil {
		t.Fatalf("AckEvent of a missing event: %v", err)
	}
	h.wantDue("r", everything, 100, ids[1])
	ledgerWantErr(t, "RetryEvent of an acknowledged event",
		h.l.RetryEvent(t.Context(), ids[0], ledgerBase, "x", false), storage.ErrNotFound)
	ledgerWantErr(t, "ReplayEvent of an acknowledged event", h.l.ReplayEvent(t.Context(), ids[0]), storage.ErrNotFound)
	// The record stays, and does not announce its status again.
	if rec, err := h.l.Get(t.Context(), "a1"); err != nil || rec.Status != storage.StatusConfirmed {
		t.Fatalf("record after ack: %v %v", rec, err)
	}
	h.update("a1", func(r *storage.Record) { r.Size = 7 })
	h.wantDue("r", everything, 100, ids[1])
}

func outboxTestPersistence(t *testing.T, h *outboxHarness) {
	ids := outboxEvents(h, "r", "d1", "d2", "p1")
	h.retry(ids[0], ledgerAt(time.Minute), "status 500", false)
	h.retry(ids[2], ledgerAt(time.Minute), "status 500", true)
	due := h.due("r", everything, 100)
	parked := h.wantParked("r", 100, ids[2])

	h.reopen()
	sameEvents(t, h.due("r", everything, 100), due)
	sameEvents(t, h.wantParked("r", 100, ids[2]), parked)

	// The reopened ledger keeps writing events, and they persist too.
	h.setStatus("d1", storage.StatusAborted)
	if err := h.l.AckEvent(t.Context(), ids[1]); err != nil {
		t.Fatal(err)
	}
	if err := h.l.ReplayEvent(t.Context(), ids[2]); err != nil {
		t.Fatal(err)
	}
	due = h.due("r", everything, 100)
	h.reopen()
	sameEvents(t, h.due("r", everything, 100), due)
	if got := slices.Sorted(slices.Values(outboxIDs(due))); !slices.Equal(got, []string{"d1:upload.aborted", ids[0], ids[2]}) {
		t.Fatalf("events after reopening %v", got)
	}
	h.wantParked("", 100)
}

func sameEvents(t *testing.T, got, want []*storage.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d: %v vs %v", len(got), len(want), outboxIDs(got), outboxIDs(want))
	}
	for i := range got {
		if !reflect.DeepEqual(outboxNormalize(got[i]), outboxNormalize(want[i])) {
			t.Fatalf("event %d:\n got %s\nwant %s", i, outboxDump(got[i]), outboxDump(want[i]))
		}
	}
}

// outboxTestConcurrent races transitions, a consumer that acknowledges what
// is due, and retries of one shared event.
func outboxTestConcurrent(t *testing.T, h *outboxHarness) {
	const workers, each, retries = 8, 10, 10
	ctx := t.Context()
	shared := outboxEvents(h, "shared", "shared")[0]

	var producers sync.WaitGroup
	for w := range workers {
		producers.Go(func() {
			for i := range each {
				id := fmt.Sprintf("c%02d-%02d", w, i)
				if err := h.l.Create(ctx, notifyRecord(id, "busy")); err != nil {
					t.Errorf("Create(%s): %v", id, err)
					return
				}
				if _, err := h.l.Update(ctx, id, func(r *storage.Record) error { r.Status = storage.StatusConfirmed; return nil }); err != nil {
					t.Errorf("Update(%s): %v", id, err)
					return
				}
			}
		})
		producers.Go(func() {
			for range retries {
				if err := h.l.RetryEvent(ctx, shared, ledgerBase, "x", false); err != nil {
					t.Errorf("RetryEvent: %v", err)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { producers.Wait(); close(done) }()

	acked := map[string]int{}
	drain := func() error {
		evs, err := h.l.DueEvents(ctx, "busy", everything, 7)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if err := h.l.AckEvent(ctx, ev.ID); err != nil {
				return err
			}
			acked[ev.ID]++
		}
		return nil
	}
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		if err := drain(); err != nil {
			t.Fatal(err)
		}
	}
	if t.Failed() {
		return
	}
	for {
		before := len(acked)
		if err := drain(); err != nil {
			t.Fatal(err)
		}
		if len(acked) == before {
			break
		}
	}
	if len(acked) != workers*each {
		t.Fatalf("%d events acknowledged, want %d", len(acked), workers*each)
	}
	for w := range workers {
		for i := range each {
			id := fmt.Sprintf("c%02d-%02d:upload.confirmed", w, i)
			if acked[id] != 1 {
				t.Fatalf("%s listed %d times until acknowledged, want once", id, acked[id])
			}
		}
	}
	evs := h.wantDue("shared", everything, 10, shared)
	if evs[0].Attempts != workers*retries {
		t.Fatalf("shared event has %d attempts after %d concurrent retries", evs[0].Attempts, workers*retries)
	}
}
