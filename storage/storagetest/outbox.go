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

// OutboxOption tunes RunOutbox.
type OutboxOption func(*outboxOptions)

type outboxOptions struct {
	setClock func(now func() time.Time)
}

// WithClock hands the suite the backend's clock for events: set(now) makes
// the ledger take the times it writes into events (CreatedAt, and the
// NextAttempt of new, replayed and rerouted events) from now, and set(nil)
// gives it back the real clock. The tests of events with equal times need
// it; without it they are skipped.
func WithClock(set func(now func() time.Time)) OutboxOption {
	return func(o *outboxOptions) { o.setClock = set }
}

// RunOutbox is the conformance suite of storage.Outbox. open works as for
// RunLedger: a fresh directory per subtest, and opening it again after
// Close gives back everything written before, events included.
func RunOutbox(t *testing.T, open func(t *testing.T, dir string) interface {
	storage.Ledger
	storage.Outbox
}, opts ...OutboxOption) {
	t.Helper()
	var o outboxOptions
	for _, opt := range opts {
		opt(&o)
	}
	tests := []struct {
		name string
		run  func(t *testing.T, h *outboxHarness)
	}{
		{"EventPerTransition", outboxTestTransitions},
		{"EveryFinalStatus", outboxTestFinalStatuses},
		{"DueEvents", outboxTestDueEvents},
		{"RecordOrder", outboxTestRecordOrder},
		{"RecordOrderTies", outboxTestRecordOrderTies},
		{"Retry", outboxTestRetry},
		{"ParkAndReplay", outboxTestParkReplay},
		{"ParkedPages", outboxTestParkedPages},
		{"ParkedPagesTies", outboxTestParkedPagesTies},
		{"Reroute", outboxTestReroute},
		{"Ack", outboxTestAck},
		{"Persistence", outboxTestPersistence},
		{"Concurrent", outboxTestConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &outboxHarness{harness: newHarness(t, open), setClock: o.setClock}
			tc.run(t, h)
		})
	}
}

type outboxHarness struct {
	*harness[OutboxLedger]
	setClock func(now func() time.Time)
}

// fixClock has the backend write t into every event until the subtest
// ends; it skips the subtest when the backend gives the suite no clock.
func (h *outboxHarness) fixClock(t time.Time) {
	h.t.Helper()
	if h.setClock == nil {
		h.t.Skip("the backend gives the suite no clock (storagetest.WithClock)")
	}
	h.setClock(func() time.Time { return t })
	h.t.Cleanup(func() { h.setClock(nil) })
}

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
	records := map[string]bool{}
	for i, ev := range evs {
		if (route != "" && ev.Route != route) || ev.Parked || ev.NextAttempt.After(t) || ev.Record == nil {
			h.t.Fatalf("DueEvents(%q, %s) listed %s", route, t, outboxDump(ev))
		}
		if i > 0 && ev.NextAttempt.Before(evs[i-1].NextAttempt) {
			h.t.Fatalf("DueEvents(%q) out of order: %s before %s", route, outboxDump(evs[i-1]), outboxDump(ev))
		}
		// The later of two events of a record waits for the earlier.
		if records[ev.Record.ID] {
			h.t.Fatalf("DueEvents(%q) listed two events of record %s: %v", route, ev.Record.ID, outboxIDs(evs))
		}
		records[ev.Record.ID] = true
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

// parked lists every parked event of route, page after page of size page,
// and checks the pages and the order.
func (h *outboxHarness) parked(route string, page int) []*storage.Event {
	h.t.Helper()
	var all []*storage.Event
	after := ""
	for pages := 0; ; pages++ {
		evs, next, err := h.l.ParkedEvents(h.t.Context(), route, after, page)
		if err != nil {
			h.t.Fatalf("ParkedEvents(%q, %q, %d): %v", route, after, page, err)
		}
		if len(evs) > page || (len(evs) == 0 && next != "") || pages > 1000 {
			h.t.Fatalf("ParkedEvents(%q, %q, %d) = %v, next %q", route, after, page, outboxIDs(evs), next)
		}
		for _, ev := range evs {
			if !ev.Parked || (route != "" && ev.Route != route) || ev.Record == nil {
				h.t.Fatalf("ParkedEvents(%q) listed %s", route, outboxDump(ev))
			}
		}
		all = append(all, evs...)
		if next == "" {
			break
		}
		after = next
	}
	for i := 1; i < len(all); i++ {
		if !parkedBefore(all[i-1], all[i]) {
			h.t.Fatalf("ParkedEvents(%q, page %d) out of order: %s before %s", route, page, outboxDump(all[i-1]), outboxDump(all[i]))
		}
	}
	return all
}

// parkedBefore is the order of ParkedEvents: CreatedAt, then id.
func parkedBefore(a, b *storage.Event) bool {
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c < 0
	}
	return a.ID < b.ID
}

// wantParked asserts the ids ParkedEvents lists, in any order (the order
// is checked against the events' own times).
func (h *outboxHarness) wantParked(route string, ids ...string) []*storage.Event {
	h.t.Helper()
	evs := h.parked(route, 100)
	got := slices.Sorted(slices.Values(outboxIDs(evs)))
	want := slices.Sorted(slices.Values(ids))
	if !slices.Equal(got, want) {
		h.t.Fatalf("ParkedEvents(%q) = %v, want %v", route, got, want)
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

	// A second final status is a second event, due once the first is
	// delivered.
	before = time.Now()
	aborted := h.setStatus("n1", storage.StatusAborted)
	after = time.Now()
	h.wantDue("hooks", everything, 100, "n1:upload.confirmed")
	if err := h.l.AckEvent(t.Context(), "n1:upload.confirmed"); err != nil {
		t.Fatal(err)
	}
	evs = h.wantDue("hooks", everything, 100, "n1:upload.aborted")
	wantFresh(t, evs[0], aborted, before, after)

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

	evs = h.wantDue("hooks", everything, 100, "n1:upload.aborted", "n3:upload.rejected")
	wantFresh(t, evs[1], born, before, after)
	// "" is every route.
	h.wantDue("", everything, 100, "n1:upload.aborted", "n3:upload.rejected")
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
	h.wantDue("c", everything, 100)

	// "" is every route, in the same order across routes: b's event is
	// due now, the others in 2031.
	h.wantDue("", everything, 100, b[0], ab[0], a[1], a[2], a[0], a[3])
	h.wantDue("", everything, 3, b[0], ab[0], a[1])
	h.wantDue("", ledgerAt(time.Minute), 100, b[0], ab[0], a[1])
	h.wantDue("", ledgerAt(-time.Nanosecond), 100, b[0])
	h.wantDue("", time.Now().Add(-time.Hour), 100)
	h.wantDue("", everything, 0)
	// Parked events are not due, whatever the route.
	h.retry(ab[0], ledgerAt(0), "y", true)
	h.wantDue("", everything, 100, b[0], a[1], a[2], a[0], a[3])
}

// outboxTestRecordOrder: an event is not due while an earlier event of its
// record is still in the outbox, whatever its state or route.
func outboxTestRecordOrder(t *testing.T, h *outboxHarness) {
	h.create(notifyRecord("r1", "r"), notifyRecord("r2", "r"))
	h.setStatus("r1", storage.StatusConfirmed)
	h.setStatus("r1", storage.StatusAborted)
	h.setStatus("r2", storage.StatusRejected)
	conf, abort, rej := "r1:upload.confirmed", "r1:upload.aborted", "r2:upload.rejected"

	// Both due now: only the earlier of r1's; r2's is not held back.
	h.wantDue("r", everything, 100, conf, rej)
	h.wantDue("", everything, 100, conf, rej)

	// The earlier one failed and waits for its next attempt: the later
	// one, though due by its own time, waits too, and does not take up
	// the limit.
	h.retry(conf, ledgerAt(time.Minute), "status 500", false)
	h.wantDue("r", time.Now().Add(time.Minute), 100, rej)
	h.wantDue("r", ledgerAt(time.Minute), 100, rej, conf)
	h.wantDue("r", everything, 1, rej)
	if err := h.l.AckEvent(t.Context(), rej); err != nil {
		t.Fatal(err)
	}
	h.wantDue("r", everything, 1, conf)

	// Parked, it still holds the later one back.
	h.retry(conf, ledgerAt(time.Minute), "status 500", true)
	h.wantDue("r", everything, 100)
	h.wantDue("", everything, 100)
	h.wantParked("r", conf)

	// Replayed, it goes first; delivered (or dropped), the next is due.
	if err := h.l.ReplayEvent(t.Context(), conf); err != nil {
		t.Fatal(err)
	}
	h.wantDue("r", everything, 100, conf)
	if err := h.l.AckEvent(t.Context(), conf); err != nil {
		t.Fatal(err)
	}
	h.wantDue("r", everything, 100, abort)

	// An earlier event handed to another route holds back the later ones
	// of the record's route.
	h.create(notifyRecord("r3", "r"))
	h.setStatus("r3", storage.StatusConfirmed)
	if err := h.l.RerouteEvent(t.Context(), "r3:upload.confirmed", "s"); err != nil {
		t.Fatal(err)
	}
	h.setStatus("r3", storage.StatusAborted)
	h.wantDue("r", everything, 100, abort)
	h.wantDue("s", everything, 100, "r3:upload.confirmed")
	h.wantDue("", everything, 100, abort, "r3:upload.confirmed")

	// Another record whose id extends this one's is another record.
	h.create(notifyRecord("o:x", "r"))
	h.setStatus("o:x", storage.StatusConfirmed)
	h.create(notifyRecord("o", "r"))
	h.setStatus("o", storage.StatusConfirmed)
	h.wantDue("r", everything, 100, abort, "o:x:upload.confirmed", "o:upload.confirmed")
}

// outboxTestRecordOrderTies: of two events of a record with the same
// CreatedAt, the smaller id is the earlier.
func outboxTestRecordOrderTies(t *testing.T, h *outboxHarness) {
	h.fixClock(ledgerAt(time.Hour))
	h.create(notifyRecord("t1", "r"))
	h.setStatus("t1", storage.StatusConfirmed)
	h.setStatus("t1", storage.StatusAborted)
	evs := h.wantDue("r", everything, 100, "t1:upload.aborted")
	if !evs[0].CreatedAt.Equal(ledgerAt(time.Hour)) {
		t.Fatalf("event written at another time than the clock's: %s", outboxDump(evs[0]))
	}
	if err := h.l.AckEvent(t.Context(), "t1:upload.aborted"); err != nil {
		t.Fatal(err)
	}
	h.wantDue("r", everything, 100, "t1:upload.confirmed")
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
	h.wantParked("")

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
	evs := h.wantParked("r", ids[0], ids[1])
	for _, ev := range evs {
		if ev.ID == ids[0] && (ev.Attempts != 2 || ev.LastError != "status 503") {
			t.Fatalf("parked: %s", outboxDump(ev))
		}
	}
	h.wantParked("s", other...)
	h.wantParked("", ids[0], ids[1], other[0])
	if evs, next, err := h.l.ParkedEvents(t.Context(), "", "", 2); err != nil || len(evs) != 2 || next == "" {
		t.Fatalf("ParkedEvents with limit 2: %d events, next %q, %v", len(evs), next, err)
	}
	if evs, next, err := h.l.ParkedEvents(t.Context(), "", "", 0); err != nil || len(evs) != 0 {
		t.Fatalf("ParkedEvents with limit 0: %v, next %q, %v", outboxIDs(evs), next, err)
	}
	h.wantParked("nobody")

	before := time.Now()
	if err := h.l.ReplayEvent(t.Context(), ids[0]); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	h.wantParked("r", ids[1])
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
	h.wantParked("", other[0])
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
	ledgerWantErr(t, "RerouteEvent of an acknowledged event", h.l.RerouteEvent(t.Context(), ids[0], "s"), storage.ErrNotFound)
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
	parked := h.wantParked("r", ids[2])

	h.reopen()
	sameEvents(t, h.due("r", everything, 100), due)
	sameEvents(t, h.wantParked("r", ids[2]), parked)

	// The reopened ledger keeps writing events, and they persist too.
	h.setStatus("d1", storage.StatusAborted)
	if err := h.l.AckEvent(t.Context(), ids[1]); err != nil {
		t.Fatal(err)
	}
	if err := h.l.ReplayEvent(t.Context(), ids[2]); err != nil {
		t.Fatal(err)
	}
	if err := h.l.RerouteEvent(t.Context(), ids[2], "s"); err != nil {
		t.Fatal(err)
	}
	due = h.due("", everything, 100)
	h.reopen()
	sameEvents(t, h.due("", everything, 100), due)
	// d1's second event waits for its first.
	if got := slices.Sorted(slices.Values(outboxIDs(due))); !slices.Equal(got, []string{ids[0], ids[2]}) {
		t.Fatalf("events after reopening %v", got)
	}
	if ev := h.wantDue("s", everything, 100, ids[2])[0]; ev.Record.Internal.Route != "s" {
		t.Fatalf("rerouted event after reopening: %s", outboxDump(ev))
	}
	h.wantParked("")
	if err := h.l.AckEvent(t.Context(), ids[0]); err != nil {
		t.Fatal(err)
	}
	h.wantDue("r", everything, 100, "d1:upload.aborted")
}

// outboxTestParkedPages pages through parked events of several routes,
// with events acknowledged, replayed and parked between the pages.
func outboxTestParkedPages(t *testing.T, h *outboxHarness) {
	// Created in this order (ids in the same order, should times tie),
	// parked in the opposite one: the listing follows their creation.
	routes := map[string]string{"p1": "a", "p2": "b", "p3": "a", "p4": "a", "p5": "b", "p6": "c"}
	var all, a []string
	for _, id := range []string{"p1", "p2", "p3", "p4", "p5", "p6"} {
		ev := outboxEvents(h, routes[id], id)[0]
		all = append(all, ev)
		if routes[id] == "a" {
			a = append(a, ev)
		}
	}
	for _, ev := range slices.Backward(all[:5]) {
		h.retry(ev, ledgerAt(time.Minute), "status 500", true)
	}
	parked := all[:5]
	for page := 1; page <= 6; page++ {
		if got := outboxIDs(h.parked("", page)); !slices.Equal(got, parked) {
			t.Fatalf("every route, pages of %d: %v, want %v", page, got, parked)
		}
		if got := outboxIDs(h.parked("a", page)); !slices.Equal(got, a) {
			t.Fatalf("route a, pages of %d: %v, want %v", page, got, a)
		}
	}
	h.wantParked("c")
	h.wantDue("c", everything, 100, all[5])

	// A cursor stays valid when events come and go: the event it stands
	// at is acknowledged, one before it replayed, a later one parked.
	evs, next, err := h.l.ParkedEvents(t.Context(), "", "", 2)
	if err != nil || !slices.Equal(outboxIDs(evs), parked[:2]) || next == "" {
		t.Fatalf("first page: %v, next %q, %v", outboxIDs(evs), next, err)
	}
	if err := h.l.AckEvent(t.Context(), parked[1]); err != nil {
		t.Fatal(err)
	}
	if err := h.l.ReplayEvent(t.Context(), parked[0]); err != nil {
		t.Fatal(err)
	}
	h.retry(all[5], ledgerAt(time.Minute), "status 500", true)
	var rest []string
	for pages := 0; next != ""; pages++ {
		evs, next, err = h.l.ParkedEvents(t.Context(), "", next, 2)
		if err != nil || len(evs) > 2 || pages > 10 {
			t.Fatalf("next page: %v, next %q, %v", outboxIDs(evs), next, err)
		}
		rest = append(rest, outboxIDs(evs)...)
	}
	if want := all[2:]; !slices.Equal(rest, want) {
		t.Fatalf("pages after the first: %v, want %v", rest, want)
	}
	if evs, next, err := h.l.ParkedEvents(t.Context(), "nobody", "", 10); err != nil || len(evs) != 0 || next != "" {
		t.Fatalf("a route without events: %v, next %q, %v", outboxIDs(evs), next, err)
	}
}

// outboxTestParkedPagesTies: events with equal CreatedAt are listed by id,
// and pages split between them lose and repeat none.
func outboxTestParkedPagesTies(t *testing.T, h *outboxHarness) {
	h.fixClock(ledgerAt(2 * time.Hour))
	routes := map[string]string{"k3": "a", "k1": "b", "k5": "a", "k2": "a", "k4": "b"}
	var ids []string
	for _, id := range []string{"k3", "k1", "k5", "k2", "k4"} {
		ev := outboxEvents(h, routes[id], id)[0]
		h.retry(ev, ledgerAt(time.Minute), "status 500", true)
		ids = append(ids, ev)
	}
	// One created earlier, with a greater id, goes first.
	h.fixClock(ledgerAt(time.Hour))
	first := outboxEvents(h, "b", "z0")[0]
	h.retry(first, ledgerAt(time.Minute), "status 500", true)

	want := append([]string{first}, slices.Sorted(slices.Values(ids))...)
	for page := 1; page <= 7; page++ {
		if got := outboxIDs(h.parked("", page)); !slices.Equal(got, want) {
			t.Fatalf("pages of %d: %v, want %v", page, got, want)
		}
		if got, want := outboxIDs(h.parked("a", page)), []string{"k2:upload.confirmed", "k3:upload.confirmed", "k5:upload.confirmed"}; !slices.Equal(got, want) {
			t.Fatalf("route a, pages of %d: %v, want %v", page, got, want)
		}
	}
}

// outboxTestReroute hands due and parked events to another route.
func outboxTestReroute(t *testing.T, h *outboxHarness) {
	ids := outboxEvents(h, "old", "d", "p", "stay")
	h.retry(ids[0], ledgerAt(time.Minute), "status 500", false)
	h.retry(ids[1], ledgerAt(time.Minute), "status 404", true)
	h.retry(ids[1], ledgerAt(time.Minute), "status 404", true)
	was := map[string]*storage.Event{}
	for _, ev := range h.due("old", everything, 100) {
		was[ev.ID] = ev
	}
	for _, ev := range h.wantParked("old", ids[1]) {
		was[ev.ID] = ev
	}

	before := time.Now()
	for _, id := range ids[:2] {
		if err := h.l.RerouteEvent(t.Context(), id, "new"); err != nil {
			t.Fatalf("RerouteEvent(%s): %v", id, err)
		}
	}
	after := time.Now()
	h.wantDue("old", everything, 100, ids[2])
	h.wantParked("")
	// Due at once, though one was due in 2031 and the other parked.
	evs := h.due("new", after, 100)
	if got := slices.Sorted(slices.Values(outboxIDs(evs))); !slices.Equal(got, ids[:2]) {
		t.Fatalf("due on the new route: %v, want %v", got, ids[:2])
	}
	for _, ev := range evs {
		old := was[ev.ID]
		want := outboxNormalize(old)
		want.Route, want.Record.Internal.Route = "new", "new"
		want.Parked, want.Attempts = false, 0
		got := outboxNormalize(ev)
		if got.NextAttempt.Before(before.Truncate(time.Microsecond)) || got.NextAttempt.After(after) {
			t.Fatalf("rerouted between %s and %s: %s", before, after, outboxDump(ev))
		}
		got.NextAttempt = want.NextAttempt
		if !reflect.DeepEqual(got, want) || ev.LastError == "" {
			t.Fatalf("rerouted:\n got %s\nwant %s", outboxDump(ev), outboxDump(&want))
		}
	}

	// Back again, to the route it came from.
	if err := h.l.RerouteEvent(t.Context(), ids[0], "old"); err != nil {
		t.Fatal(err)
	}
	h.wantDue("old", everything, 100, ids[2], ids[0])
	h.wantDue("new", everything, 100, ids[1])
	ledgerWantErr(t, "RerouteEvent of a missing event", h.l.RerouteEvent(t.Context(), "missing:upload.confirmed", "new"), storage.ErrNotFound)
	if err := h.l.AckEvent(t.Context(), ids[1]); err != nil {
		t.Fatal(err)
	}
	ledgerWantErr(t, "RerouteEvent of an acknowledged event", h.l.RerouteEvent(t.Context(), ids[1], "new"), storage.ErrNotFound)
	h.wantDue("", everything, 100, ids[2], ids[0])
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
