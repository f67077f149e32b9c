package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// receiver is the application's endpoint: it verifies each delivery
// against the clock it is given and answers status (204 when zero).
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	now    func() time.Time
	status atomic.Int32
	// hang keeps requests waiting until the client gives up.
	hang atomic.Bool
	// delay slows every answer down.
	delay atomic.Int64

	mu   sync.Mutex
	reqs []delivery
	// fail is how many more attempts of an event id get a 500.
	fail map[string]int
}

type delivery struct {
	id     string
	status int
	body   []byte
	header http.Header
}

func newReceiver(t *testing.T, now func() time.Time) *receiver {
	r := &receiver{t: t, now: now}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		r.t.Errorf("reading a delivery: %v", err)
		return
	}
	if r.hang.Load() {
		<-req.Context().Done()
		return
	}
	time.Sleep(time.Duration(r.delay.Load()))
	ts, err := Verify([]byte(testSecret), req.Header.Get("X-Upload-Signature"), body, r.now())
	var p struct {
		ID string `json:"id"`
	}
	if err == nil {
		err = json.Unmarshal(body, &p)
	}
	var id string
	if err == nil {
		id, err = VerifyStandard([]byte(testSecret), req.Header, body, r.now())
	}
	if err != nil || req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" || id != p.ID ||
		req.Header.Get("Webhook-Id") != p.ID || req.Header.Get("Webhook-Timestamp") != strconv.FormatInt(ts, 10) {
		r.t.Errorf("bad delivery %s %s: %v, headers %v", req.Method, body, err, req.Header)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	status := int(r.status.Load())
	if status == 0 {
		status = http.StatusNoContent
	}
	r.mu.Lock()
	if r.fail[p.ID] > 0 {
		r.fail[p.ID]--
		status = http.StatusInternalServerError
	}
	r.reqs = append(r.reqs, delivery{id: p.ID, status: status, body: body, header: req.Header.Clone()})
	r.mu.Unlock()
	w.WriteHeader(status)
}

// failNext answers the next n attempts of event id with 500.
func (r *receiver) failNext(id string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail == nil {
		r.fail = map[string]int{}
	}
	r.fail[id] = n
}

// log lists the attempts of the events of record id in the order they
// arrived, as "<event id> <status>".
func (r *receiver) log(id string) []string {
	var out []string
	for _, d := range r.got() {
		if strings.HasPrefix(d.id, id+":") {
			out = append(out, fmt.Sprintf("%s %d", d.id, d.status))
		}
	}
	return out
}

func (r *receiver) got() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.reqs...)
}

func (r *receiver) count(id string) int {
	n := 0
	for _, d := range r.got() {
		if d.id == id {
			n++
		}
	}
	return n
}

// testDispatcher starts a dispatcher on outbox for route "docs" that
// posts to url, with testSecret unless cfg has a secret; it stops when the
// test ends. Its waits are the ceilings
// less 1ns (the largest full jitter can draw), so tests can predict them.
func testDispatcher(t *testing.T, cfg Config, outbox storage.Outbox, now func() time.Time, tick time.Duration) (*Dispatcher, context.CancelFunc) {
	t.Helper()
	if cfg.Secret == nil {
		cfg.Secret = []byte(testSecret)
	}
	d, err := newDispatcher(cfg.WithDefaults(), Options{Outbox: outbox, Route: "docs", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	d.jitter = func(ceiling time.Duration) time.Duration { return ceiling - 1 }
	d.tick = tick
	ctx, cancel := context.WithCancel(context.Background())
	d.start(ctx)
	t.Cleanup(func() { cancel(); <-d.Done() })
	return d, cancel
}

func TestDelivered(t *testing.T) {
	clock := newClock()
	rcv := newReceiver(t, clock.Now)
	outbox := newOutbox(t.Name(), clock.Now)
	id := outbox.add("docs", "rec1", clock.Now())
	other := outbox.add("avatars", "rec2", clock.Now())
	want, err := body(outbox.get(id))
	if err != nil {
		t.Fatal(err)
	}
	d, _ := testDispatcher(t, Config{URL: rcv.srv.URL + "/hooks"}, outbox, clock.Now, time.Hour)
	d.Wake()

	eventually(t, "acknowledged", func() bool { return outbox.get(id) == nil })
	got := rcv.got()
	if len(got) != 1 || got[0].id != id || string(got[0].body) != string(want) {
		t.Fatalf("deliveries %+v, want one of %s", got, want)
	}
	if h := got[0].header; h.Get("Webhook-Timestamp") != strconv.FormatInt(clock.Now().Unix(), 10) || h.Get("User-Agent") != "caddyupload-webhook" {
		t.Errorf("headers %v: signed at another time than the clock's", h)
	}
	// Another route's event is not this dispatcher's to deliver.
	if ev := outbox.get(other); ev == nil || ev.Attempts != 0 || rcv.count(other) != 0 {
		t.Errorf("another route's event was handled: %+v", ev)
	}
}

func TestRetriedThenParked(t *testing.T) {
	clock := newClock()
	rcv := newReceiver(t, clock.Now)
	rcv.status.Store(http.StatusInternalServerError)
	outbox := newOutbox(t.Name(), clock.Now)
	id := outbox.add("docs", "rec1", clock.Now())
	d, _ := testDispatcher(t, Config{URL: rcv.srv.URL, MaxAttempts: 3, MaxBackoff: 90 * time.Second}, outbox, clock.Now, 5*time.Millisecond)

	// Waits of up to 1s, then 2s: each attempt is set for then, and made
	// no sooner.
	for attempt, wait := range []time.Duration{time.Second, 2 * time.Second} {
		d.Wake()
		eventually(t, "a failed attempt", func() bool { ev := outbox.get(id); return ev != nil && ev.Attempts >= attempt+1 })
		ev := outbox.get(id)
		if ev.Attempts != attempt+1 || ev.Parked || ev.LastError != "status 500" || !ev.NextAttempt.Equal(clock.Now().Add(wait-1)) {
			t.Fatalf("after attempt %d: %+v, want the next at now+%s", attempt+1, ev, wait-1)
		}
		clock.Advance(wait - 2)
		d.Wake()
		time.Sleep(50 * time.Millisecond) // many ticks
		if n := rcv.count(id); n != attempt+1 {
			t.Fatalf("%d attempts before the backoff ran out, want %d", n, attempt+1)
		}
		clock.Advance(1)
	}
	d.Wake()
	eventually(t, "parked", func() bool { ev := outbox.get(id); return ev != nil && ev.Parked })
	if ev := outbox.get(id); ev.Attempts != 3 || ev.LastError != "status 500" {
		t.Errorf("parked event %+v", ev)
	}
	clock.Advance(24 * time.Hour)
	d.Wake()
	time.Sleep(50 * time.Millisecond)
	if n := rcv.count(id); n != 3 {
		t.Errorf("%d attempts, want max_attempts (3)", n)
	}

	// Replayed once the application is back, it is delivered.
	rcv.status.Store(http.StatusOK)
	if err := outbox.ReplayEvent(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	WakeAll()
	eventually(t, "the replayed event acknowledged", func() bool { return outbox.get(id) == nil })
	if n := rcv.count(id); n != 4 {
		t.Errorf("%d attempts, want 3 failures and a success", n)
	}
}

func TestTimeout(t *testing.T) {
	clock := newClock()
	rcv := newReceiver(t, clock.Now)
	rcv.hang.Store(true)
	outbox := newOutbox(t.Name(), clock.Now)
	id := outbox.add("docs", "rec1", clock.Now())
	d, _ := testDispatcher(t, Config{URL: rcv.srv.URL + "/h?token=sekrit-token", Timeout: time.Second, MaxAttempts: 1}, outbox, clock.Now, time.Hour)
	start := time.Now()
	d.Wake()
	eventually(t, "parked", func() bool { ev := outbox.get(id); return ev != nil && ev.Parked })
	if ev := outbox.get(id); ev.LastError != "no answer within the timeout" || strings.Contains(ev.LastError, "sekrit") {
		t.Errorf("last error %q", ev.LastError)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("the attempt took %s with a 1s timeout", el)
	}

	// The same endpoint answering in time gets it.
	rcv.hang.Store(false)
	rcv.delay.Store(int64(10 * time.Millisecond))
	if err := outbox.ReplayEvent(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	d.Wake()
	eventually(t, "acknowledged", func() bool { return outbox.get(id) == nil })
}

func TestRedirectNotFollowed(t *testing.T) {
	clock := newClock()
	target := newReceiver(t, clock.Now)
	var redirect atomic.Bool
	redirect.Store(true)
	var hits atomic.Int32
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if redirect.Load() {
			http.Redirect(w, r, target.srv.URL, http.StatusTemporaryRedirect)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(app.Close)
	outbox := newOutbox(t.Name(), clock.Now)
	id := outbox.add("docs", "rec1", clock.Now())
	d, _ := testDispatcher(t, Config{URL: app.URL, MaxAttempts: 1}, outbox, clock.Now, time.Hour)
	d.Wake()
	eventually(t, "parked", func() bool { ev := outbox.get(id); return ev != nil && ev.Parked })
	if ev := outbox.get(id); ev.LastError != "status 307" || hits.Load() != 1 {
		t.Errorf("after a redirect: %+v, %d hits", ev, hits.Load())
	}

	// The configured URL answering 2xx gets it; the redirect's target
	// never did.
	redirect.Store(false)
	if err := outbox.ReplayEvent(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	d.Wake()
	eventually(t, "acknowledged", func() bool { return outbox.get(id) == nil })
	if n := len(target.got()); n != 0 {
		t.Errorf("the redirect was followed: %d deliveries to its target", n)
	}
}

// TestLeaseNewestDelivers: during a reload the old config's dispatcher
// runs beside the new one's on the same outbox and route.
func TestLeaseNewestDelivers(t *testing.T) {
	clock := newClock()
	oldApp, newApp := newReceiver(t, clock.Now), newReceiver(t, clock.Now)
	outbox := newOutbox(t.Name(), clock.Now)
	// The old one looks for due events all the time, the new one only
	// when woken.
	old, _ := testDispatcher(t, Config{URL: oldApp.srv.URL}, outbox, clock.Now, 5*time.Millisecond)
	// A dispatcher reads its clock for a round only while it holds the
	// lease: once the new one has made its first round, nothing reads the
	// outbox until it is woken.
	var newRounds atomic.Int32
	newNow := func() time.Time { newRounds.Add(1); return clock.Now() }
	_, stopNew := testDispatcher(t, Config{URL: newApp.srv.URL}, outbox, newNow, time.Hour)
	eventually(t, "the first round", func() bool { return newRounds.Load() > 0 })
	due := outbox.due()
	id := outbox.add("docs", "rec1", clock.Now())
	time.Sleep(100 * time.Millisecond) // many rounds of the old one
	if ev := outbox.get(id); ev == nil || ev.Attempts != 0 || len(oldApp.got()) != 0 || outbox.due() != due {
		t.Fatalf("the old dispatcher delivered or read the outbox: %+v", ev)
	}
	// A wake-up through the old config reaches the lease holder.
	old.Wake()
	eventually(t, "acknowledged", func() bool { return outbox.get(id) == nil })
	if len(oldApp.got()) != 0 || newApp.count(id) != 1 {
		t.Fatalf("old got %d, new %d deliveries; want only the new one", len(oldApp.got()), newApp.count(id))
	}

	// When the newest stops (a config that failed to load), the old one
	// takes over.
	stopNew()
	id2 := outbox.add("docs", "rec2", clock.Now())
	eventually(t, "acknowledged by the old dispatcher", func() bool { return outbox.get(id2) == nil })
	if oldApp.count(id2) != 1 || newApp.count(id2) != 0 {
		t.Errorf("old got %d, new %d deliveries of the second event", oldApp.count(id2), newApp.count(id2))
	}
	// Another ledger's lease for the same route is its own.
	other := newOutbox(t.Name()+"-other", clock.Now)
	otherApp := newReceiver(t, clock.Now)
	od, _ := testDispatcher(t, Config{URL: otherApp.srv.URL}, other, clock.Now, time.Hour)
	id3 := other.add("docs", "rec3", clock.Now())
	od.Wake()
	eventually(t, "acknowledged on the other ledger", func() bool { return other.get(id3) == nil })
	if otherApp.count(id3) != 1 {
		t.Errorf("other ledger: %d deliveries", otherApp.count(id3))
	}
}

// TestTakeoverNoDuplicates stops the lease holder in the middle of a
// backlog: the other dispatcher finishes it, and no event arrives twice.
// One at a time, the events go out oldest first.
func TestTakeoverNoDuplicates(t *testing.T) {
	for _, conc := range []int{1, 8} {
		t.Run(fmt.Sprintf("concurrency=%d", conc), func(t *testing.T) {
			clock := newClock()
			a, b := newReceiver(t, clock.Now), newReceiver(t, clock.Now)
			b.delay.Store(int64(5 * time.Millisecond))
			outbox := newOutbox(t.Name(), clock.Now)
			var ids []string
			for i := range 40 {
				ids = append(ids, outbox.add("docs", "rec"+strconv.Itoa(i), clock.Now().Add(time.Duration(i))))
			}
			clock.Advance(time.Second)
			testDispatcher(t, Config{URL: a.srv.URL, Concurrency: conc}, outbox, clock.Now, 5*time.Millisecond)
			_, stopB := testDispatcher(t, Config{URL: b.srv.URL, Concurrency: conc}, outbox, clock.Now, 5*time.Millisecond)
			eventually(t, "part of the backlog delivered", func() bool { return len(b.got()) >= 10 })
			stopB()
			eventually(t, "the backlog delivered", func() bool {
				outbox.mu.Lock()
				defer outbox.mu.Unlock()
				return len(outbox.events) == 0
			})
			if len(a.got()) == 0 || len(b.got()) == 0 {
				t.Fatalf("a got %d, b %d: no takeover happened", len(a.got()), len(b.got()))
			}
			outbox.mu.Lock()
			acks := append([]string(nil), outbox.acks...)
			outbox.mu.Unlock()
			for i, id := range ids {
				if n := a.count(id) + b.count(id); n != 1 {
					t.Errorf("%s delivered %d times", id, n)
				}
				// Oldest first, across the takeover.
				if conc == 1 && acks[i] != id {
					t.Errorf("ack %d is %s, want %s", i, acks[i], id)
				}
			}
		})
	}
}

// TestRecordOrder: the application fails an upload's upload.confirmed
// once; the upload's next event, due meanwhile, waits until confirmed is
// delivered. Other uploads are not held back.
func TestRecordOrder(t *testing.T) {
	for _, status := range []storage.Status{storage.StatusAborted, storage.StatusRejected} {
		t.Run(string(status), func(t *testing.T) {
			clock := newClock()
			rcv := newReceiver(t, clock.Now)
			outbox := newOutbox(t.Name(), clock.Now)
			conf := outbox.addEvent("docs", "rec1", storage.StatusConfirmed, clock.Now())
			other := outbox.add("docs", "rec2", clock.Now().Add(1))
			rcv.failNext(conf, 1)
			clock.Advance(1)
			// A dispatcher makes its first round at once.
			d, _ := testDispatcher(t, Config{URL: rcv.srv.URL}, outbox, clock.Now, time.Hour)
			// The two go out side by side.
			eventually(t, "the other upload's event delivered and the failure recorded", func() bool {
				ev := outbox.get(conf)
				return outbox.get(other) == nil && ev != nil && ev.Attempts > 0
			})
			if ev := outbox.get(conf); ev == nil || ev.Attempts != 1 || !ev.NextAttempt.After(clock.Now()) {
				t.Fatalf("the failed event: %+v", ev)
			}

			// The next event of the upload is due by its own time, and
			// waits: however often the dispatcher looks, until confirmed
			// has its next attempt.
			clock.Advance(time.Millisecond)
			next := outbox.addEvent("docs", "rec1", status, clock.Now())
			for range 5 {
				d.Wake()
				time.Sleep(10 * time.Millisecond)
			}
			if got := rcv.log("rec1"); !slices.Equal(got, []string{conf + " 500"}) {
				t.Fatalf("attempts before confirmed was retried: %v", got)
			}
			clock.Advance(time.Second)
			d.Wake()
			eventually(t, "both delivered", func() bool { return outbox.get(conf) == nil && outbox.get(next) == nil })
			if got, want := rcv.log("rec1"), []string{conf + " 500", conf + " 204", next + " 204"}; !slices.Equal(got, want) {
				t.Fatalf("attempts %v, want %v", got, want)
			}
		})
	}
}

// TestRecordOrderWithinRound: should the outbox list two events of an
// upload in one batch, the later gets no attempt in the round in which
// the earlier failed. (Across rounds, the outbox's order rule keeps it
// back.)
func TestRecordOrderWithinRound(t *testing.T) {
	clock := newClock()
	rcv := newReceiver(t, clock.Now)
	outbox := newOutbox(t.Name(), clock.Now)
	outbox.loose = true
	conf := outbox.addEvent("docs", "rec1", storage.StatusConfirmed, clock.Now())
	aborted := outbox.addEvent("docs", "rec1", storage.StatusAborted, clock.Now().Add(1))
	clock.Advance(1)
	if evs, _ := outbox.DueEvents(t.Context(), "docs", clock.Now(), batch); len(evs) != 2 {
		t.Fatalf("the outbox lists %d events in one batch, want both", len(evs))
	}
	rcv.failNext(conf, 1)
	// One round only: the first, made at once; it delivers nothing, and
	// the tick is far away.
	testDispatcher(t, Config{URL: rcv.srv.URL}, outbox, clock.Now, time.Hour)
	eventually(t, "the failed attempt recorded", func() bool { ev := outbox.get(conf); return ev != nil && ev.Attempts == 1 })
	time.Sleep(50 * time.Millisecond)
	if got := rcv.log("rec1"); !slices.Equal(got, []string{conf + " 500"}) {
		t.Fatalf("attempts in the round: %v, want only the failed confirmed", got)
	}
	if ev := outbox.get(aborted); ev == nil || ev.Attempts != 0 {
		t.Fatalf("the later event: %+v", ev)
	}
}

// TestRecordOrderListedOutOfOrder: should the outbox list two events of an
// upload, the later one first (the earlier was retried, so its next
// attempt is later), the earlier one still goes first, and the later only
// once it is delivered.
func TestRecordOrderListedOutOfOrder(t *testing.T) {
	clock := newClock()
	rcv := newReceiver(t, clock.Now)
	rcv.delay.Store(int64(20 * time.Millisecond))
	outbox := newOutbox(t.Name(), clock.Now)
	outbox.loose = true
	conf := outbox.addEvent("docs", "rec1", storage.StatusConfirmed, clock.Now())
	aborted := outbox.addEvent("docs", "rec1", storage.StatusAborted, clock.Now().Add(1))
	outbox.mu.Lock()
	outbox.events[conf].NextAttempt = clock.Now().Add(2)
	outbox.mu.Unlock()
	clock.Advance(time.Second)
	if evs, _ := outbox.DueEvents(t.Context(), "docs", clock.Now(), batch); len(evs) != 2 || evs[0].ID != aborted {
		t.Fatalf("the outbox lists %v, want aborted first", evs)
	}
	testDispatcher(t, Config{URL: rcv.srv.URL}, outbox, clock.Now, time.Hour)
	eventually(t, "both delivered", func() bool { return outbox.get(conf) == nil && outbox.get(aborted) == nil })
	if got, want := rcv.log("rec1"), []string{conf + " 204", aborted + " 204"}; !slices.Equal(got, want) {
		t.Fatalf("attempts %v, want %v", got, want)
	}
}
