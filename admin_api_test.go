package caddyupload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddyupload/caddyupload/internal/realservers"
	"github.com/caddyupload/caddyupload/internal/webhook"
	"github.com/caddyupload/caddyupload/storage"
	"github.com/caddyupload/caddyupload/storage/boltledger"
)

// adminListing is the answer of the listings.
type adminListing struct {
	Events   []adminParked `json:"events"`
	Next     string        `json:"next"`
	Complete bool          `json:"complete"`
}

type adminParked struct {
	Ledger    string `json:"ledger"`
	ID        string `json:"id"`
	Type      string `json:"type"`
	Route     string `json:"route"`
	Attempts  int    `json:"attempts"`
	Parked    bool   `json:"parked"`
	LastError string `json:"last_error"`
	Record    struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	} `json:"record"`
}

func TestAdminParkedAndReplay(t *testing.T) {
	s, rcv := newHookSite(t)
	rcv.down.Store(true)
	admin := fmt.Sprintf("127.0.0.1:%d", realservers.FreePort(t))
	plain := s.caddyfile(hookPolicy(rcv.srv.URL, "max_attempts 2"))
	cfg := strings.Replace(plain, "admin off", "admin "+admin, 1)
	if cfg == plain {
		t.Fatal("the site's global options no longer turn the admin endpoint off")
	}
	s.load(cfg)

	var allow string // the Allow header of the last answer
	adminCall := func(method, path string, out any) int {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+admin+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp := do(t, noRedirect, req)
		if out != nil && resp.StatusCode == http.StatusOK {
			if err := json.Unmarshal(resp.body, out); err != nil {
				t.Fatalf("%s %s: %s: %v", method, path, resp.body, err)
			}
		}
		allow = resp.Header.Get("Allow")
		return resp.StatusCode
	}
	parked := func(query string) []adminParked {
		t.Helper()
		var page adminListing
		if st := adminCall("GET", "/upload/outbox/parked"+query, &page); st != http.StatusOK || page.Events == nil {
			t.Fatalf("GET parked: %d %+v", st, page)
		}
		return page.Events
	}

	id := confirmUpload(s, "alice")
	ev := id + ":upload.confirmed"
	var list []adminParked
	eventually(t, "the event parked", func() bool { list = parked(""); return len(list) > 0 })
	p := list[0]
	if len(list) != 1 || p.ID != ev || p.Type != "upload.confirmed" || p.Route != "docs" || p.Attempts != 2 || !p.Parked ||
		p.LastError != "status 500" || p.Ledger != ledgerPath(s) || p.Record.ID != id || p.Record.Status != "confirmed" {
		t.Fatalf("parked list %+v", list)
	}
	if n := rcv.attempts(ev); n != 2 {
		t.Errorf("%d attempts before parking, want max_attempts (2)", n)
	}
	if l := parked("?route=docs"); len(l) != 1 {
		t.Errorf("route docs lists %d parked events", len(l))
	}
	if l := parked("?route=avatars"); len(l) != 0 {
		t.Errorf("another route lists %+v", l)
	}

	if st := adminCall("POST", "/upload/outbox/replay/nope:upload.confirmed", nil); st != http.StatusNotFound {
		t.Errorf("replay of an unknown event: %d", st)
	}
	if st := adminCall("GET", "/upload/outbox/replay/"+ev, nil); st != http.StatusMethodNotAllowed || allow != "POST" {
		t.Errorf("GET replay: %d, Allow %q", st, allow)
	}
	if st := adminCall("POST", "/upload/outbox/parked", nil); st != http.StatusMethodNotAllowed || allow != "GET, HEAD" {
		t.Errorf("POST parked: %d, Allow %q", st, allow)
	}
	if rcv.delivered(ev) != 0 || len(parked("")) != 1 {
		t.Fatal("a parked event moved without a replay")
	}

	rcv.down.Store(false)
	if st := adminCall("POST", "/upload/outbox/replay/"+ev, nil); st != http.StatusNoContent {
		t.Fatalf("replay: %d", st)
	}
	rcv.waitDelivered(ev)
	eventually(t, "the parked list empty", func() bool { return len(parked("")) == 0 })
	abortAndWait(s, rcv, "alice", id)
	if n := rcv.delivered(ev); n != 1 {
		t.Errorf("replayed event accepted %d times, want once", n)
	}
}

// memParked is an outbox holding parked events only: enough for the admin
// API, which lists and replays them.
type memParked struct {
	mu       sync.Mutex
	parked   map[string]*storage.Event
	replayed []string
}

func (o *memParked) DueEvents(context.Context, string, time.Time, int) ([]*storage.Event, error) {
	return nil, nil
}
func (o *memParked) AckEvent(context.Context, string) error { return nil }
func (o *memParked) RetryEvent(context.Context, string, time.Time, string, bool) error {
	return storage.ErrNotFound
}

func (o *memParked) RerouteEvent(context.Context, string, string) error { return storage.ErrNotFound }

func (o *memParked) ParkedEvents(_ context.Context, route, _ string, limit int) ([]*storage.Event, string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*storage.Event
	for _, ev := range o.parked {
		if (route == "" || ev.Route == route) && len(out) < limit {
			c := *ev
			out = append(out, &c)
		}
	}
	return out, "", nil
}

func (o *memParked) ReplayEvent(_ context.Context, id string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.parked[id] == nil {
		return storage.ErrNotFound
	}
	delete(o.parked, id)
	o.replayed = append(o.replayed, id)
	return nil
}

// TestAdminRegistry: the admin API reaches any registered outbox, for as
// long as one of its registrations lasts, and answers wrong methods with
// 405 and Allow.
func TestAdminRegistry(t *testing.T) {
	const route = "admin-registry-test"
	name := "mem:" + t.Name()
	ev := &storage.Event{ID: "r1:upload.confirmed", Type: storage.EventConfirmed, Route: route, Attempts: 3, Parked: true, LastError: "status 500",
		Record: &storage.Record{ID: "r1", Status: storage.StatusConfirmed}}
	o := &memParked{parked: map[string]*storage.Event{ev.ID: ev}}
	var api adminAPI
	serve := func(h func(http.ResponseWriter, *http.Request) error, method, target string) (*httptest.ResponseRecorder, int) {
		t.Helper()
		w := httptest.NewRecorder()
		err := h(w, httptest.NewRequest(method, target, nil))
		var apiErr caddy.APIError
		switch {
		case err == nil:
			return w, w.Code
		case errors.As(err, &apiErr):
			return w, apiErr.HTTPStatus
		}
		t.Fatalf("%s %s: %v", method, target, err)
		return nil, 0
	}
	parked := func() []adminParked {
		t.Helper()
		w, st := serve(api.serveParked, "GET", "/upload/outbox/parked?route="+route)
		var page adminListing
		if st != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &page) != nil || page.Next != "" {
			t.Fatalf("GET parked: %d %s", st, w.Body)
		}
		return page.Events
	}

	if l := parked(); len(l) != 0 {
		t.Fatalf("listed before registration: %+v", l)
	}
	release1 := registerOutbox(name, o)
	release2 := registerOutbox(name, o) // a second config sharing the ledger
	if l := parked(); len(l) != 1 || l[0].Ledger != name || l[0].ID != ev.ID || !l[0].Parked || l[0].Attempts != 3 || l[0].Record.ID != "r1" {
		t.Fatalf("parked list %+v", l)
	}
	release1()
	release1() // releasing twice does not drop the other registration
	if l := parked(); len(l) != 1 {
		t.Fatalf("the ledger was dropped while a config still uses it: %+v", l)
	}

	for _, tc := range []struct {
		h      func(http.ResponseWriter, *http.Request) error
		method string
		target string
		allow  string
	}{
		{api.serveParked, "POST", "/upload/outbox/parked", "GET, HEAD"},
		{api.serveParked, "DELETE", "/upload/outbox/parked", "GET, HEAD"},
		{api.serveReplay, "GET", replayPrefix + ev.ID, "POST"},
		{api.serveReplay, "PUT", replayPrefix + ev.ID, "POST"},
		{api.serveStranded, "POST", "/upload/outbox/stranded", "GET, HEAD"},
		{api.serveReroute, "GET", reroutePrefix + ev.ID, "POST"},
		{api.serveDrop, "DELETE", dropPrefix + ev.ID, "POST"},
	} {
		if w, st := serve(tc.h, tc.method, tc.target); st != http.StatusMethodNotAllowed || w.Header().Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d, Allow %q; want 405, %q", tc.method, tc.target, st, w.Header().Get("Allow"), tc.allow)
		}
	}
	for _, target := range []string{replayPrefix + "nope:upload.confirmed", replayPrefix, replayPrefix + ev.ID + "/x"} {
		if _, st := serve(api.serveReplay, "POST", target); st != http.StatusNotFound {
			t.Errorf("POST %s: %d, want 404", target, st)
		}
	}
	if len(o.replayed) != 0 {
		t.Fatalf("replayed by a refused request: %v", o.replayed)
	}
	if _, st := serve(api.serveReplay, "POST", replayPrefix+ev.ID); st != http.StatusNoContent || len(o.replayed) != 1 {
		t.Fatalf("replay: %d, replayed %v", st, o.replayed)
	}
	if _, st := serve(api.serveReplay, "POST", replayPrefix+ev.ID); st != http.StatusNotFound {
		t.Errorf("second replay: %d, want 404", st)
	}

	release2()
	o.parked[ev.ID] = ev
	if l := parked(); len(l) != 0 {
		t.Errorf("listed after its last release: %+v", l)
	}
}

// adminServe calls an admin handler as Caddy's admin endpoint does and
// returns the answer's status: an error's, or the written one.
func adminServe(t *testing.T, h func(http.ResponseWriter, *http.Request) error, method, target, body string) (*httptest.ResponseRecorder, int) {
	t.Helper()
	w := httptest.NewRecorder()
	err := h(w, httptest.NewRequest(method, target, strings.NewReader(body)))
	var apiErr caddy.APIError
	switch {
	case err == nil:
		return w, w.Code
	case errors.As(err, &apiErr):
		return w, apiErr.HTTPStatus
	}
	t.Fatalf("%s %s: %v", method, target, err)
	return nil, 0
}

// adminLedger opens a bolt ledger registered with the admin API under
// name until the test ends.
func adminLedger(t *testing.T, name string) *boltledger.Ledger {
	t.Helper()
	l, err := boltledger.Open(filepath.Join(t.TempDir(), "ledger.db"), boltledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	release := registerOutbox(name, l)
	t.Cleanup(func() { release(); l.Close() })
	return l
}

// adminEvent writes the event of record id of route reaching status.
func adminEvent(t *testing.T, l *boltledger.Ledger, route, id string, statuses ...storage.Status) string {
	t.Helper()
	rec := &storage.Record{ID: id, Key: "k/" + id, Status: storage.StatusPending, Filename: id + ".txt", Size: 1, Type: "text/plain",
		CreatedAt: time.Now(), Internal: storage.RecordInternal{Subject: "alice", Store: "s", Route: route, Notify: true}}
	if err := l.Create(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	var ev string
	for _, st := range statuses {
		if _, err := l.Update(t.Context(), id, func(r *storage.Record) error { r.Status = st; return nil }); err != nil {
			t.Fatal(err)
		}
		ev = id + ":" + storage.EventFor(st)
	}
	return ev
}

type ledgerEvent struct{ ledger, id string }

// TestAdminParkedPages pages through the parked events of two ledgers.
func TestAdminParkedPages(t *testing.T) {
	const route = "admin-pages-test"
	var api adminAPI
	nameA, nameB := "mem:"+t.Name()+"/a", "mem:"+t.Name()+"/b"
	a, b := adminLedger(t, nameA), adminLedger(t, nameB)
	var want []ledgerEvent
	for _, x := range []struct {
		l    *boltledger.Ledger
		name string
		ids  []string
	}{{a, nameA, []string{"a1", "a2", "a3"}}, {b, nameB, []string{"b1", "b2", "b3"}}} {
		for _, id := range x.ids {
			ev := adminEvent(t, x.l, route, id, storage.StatusConfirmed)
			if err := x.l.RetryEvent(t.Context(), ev, time.Now(), "status 500", true); err != nil {
				t.Fatal(err)
			}
			want = append(want, ledgerEvent{x.name, ev})
		}
	}
	// Neither another route's parked event nor a waiting one is listed.
	other := adminEvent(t, a, "admin-pages-other", "o1", storage.StatusConfirmed)
	if err := a.RetryEvent(t.Context(), other, time.Now(), "status 500", true); err != nil {
		t.Fatal(err)
	}
	adminEvent(t, b, route, "waiting", storage.StatusConfirmed)

	for limit := 1; limit <= 7; limit++ {
		var got []ledgerEvent
		after := ""
		for pages := 0; ; pages++ {
			target := fmt.Sprintf("/upload/outbox/parked?route=%s&limit=%d&after=%s", route, limit, after)
			w, st := adminServe(t, api.serveParked, "GET", target, "")
			var page adminListing
			if st != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &page) != nil || page.Events == nil || len(page.Events) > limit || pages > 10 {
				t.Fatalf("GET %s: %d %s", target, st, w.Body)
			}
			for _, ev := range page.Events {
				if !ev.Parked || ev.Route != route {
					t.Fatalf("GET %s listed %+v", target, ev)
				}
				got = append(got, ledgerEvent{ev.Ledger, ev.ID})
			}
			if page.Next == "" {
				break
			}
			if len(page.Events) == 0 {
				t.Fatalf("GET %s: an empty page with a next one", target)
			}
			after = page.Next
		}
		if !slices.Equal(got, want) {
			t.Fatalf("pages of %d: %v, want %v", limit, got, want)
		}
	}
	if w, st := adminServe(t, api.serveParked, "HEAD", "/upload/outbox/parked?route="+route, ""); st != http.StatusOK {
		t.Errorf("HEAD parked: %d %s", st, w.Body)
	}

	// Input that is not what the endpoint hands out is refused with 400,
	// and the same endpoint answers 200 to what it does hand out (above).
	badStore := adminCursor{L: nameA, A: "%%%"}.String()
	for _, q := range []string{"limit=0", "limit=-1", "limit=1001", "limit=x", "after=garbage!", "after=e30", "after=" + badStore} {
		if w, st := adminServe(t, api.serveParked, "GET", "/upload/outbox/parked?route="+route+"&"+q, ""); st != http.StatusBadRequest {
			t.Errorf("GET parked?%s: %d %s, want 400", q, st, w.Body)
		}
	}
}

// TestAdminStranded lists the waiting events of a route that has no
// webhook running, reroutes them to one that has, and drops one.
func TestAdminStranded(t *testing.T) {
	var api adminAPI
	name := "mem:" + t.Name()
	l := adminLedger(t, name)
	rcv := newHookReceiver(t)
	ctx, cancel := context.WithCancel(context.Background())
	cfg := webhook.Config{URL: rcv.srv.URL, Secret: []byte(testWebhookSecret), MaxBackoff: time.Second}.WithDefaults()
	d, err := webhook.Start(ctx, cfg, webhook.Options{Outbox: l, Route: "live"})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-d.Done()
		}
	}
	t.Cleanup(stop)

	stranded := func(query string) []string {
		t.Helper()
		w, st := adminServe(t, api.serveStranded, "GET", "/upload/outbox/stranded"+query, "")
		var list adminListing
		if st != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &list) != nil || list.Events == nil || !list.Complete {
			t.Fatalf("GET stranded%s: %d %s", query, st, w.Body)
		}
		var ids []string
		for _, ev := range list.Events {
			if ev.Ledger != name || ev.Parked {
				t.Fatalf("GET stranded%s listed %+v", query, ev)
			}
			ids = append(ids, ev.ID)
		}
		return ids
	}
	reroute := func(id, body string) int {
		t.Helper()
		_, st := adminServe(t, api.serveReroute, "POST", reroutePrefix+id, body)
		return st
	}

	live := adminEvent(t, l, "live", "l1", storage.StatusConfirmed)
	d.Wake()
	rcv.waitDelivered(live)
	// A live route's event that waits for a retry is not stranded.
	rcv.down.Store(true)
	retrying := adminEvent(t, l, "live", "l2", storage.StatusConfirmed)
	d.Wake()
	eventually(t, "a failed attempt", func() bool { return rcv.attempts(retrying) > 0 })

	s1 := adminEvent(t, l, "gone", "s1", storage.StatusConfirmed)
	s2 := adminEvent(t, l, "gone", "s2", storage.StatusConfirmed, storage.StatusAborted)
	s2first := "s2:" + storage.EventConfirmed
	s3 := adminEvent(t, l, "gone", "s3", storage.StatusRejected)
	if err := l.RetryEvent(t.Context(), s3, time.Now(), "status 500", true); err != nil {
		t.Fatal(err)
	}
	// Of s2's two events the earlier shows; the parked s3 is not waiting.
	if got, want := stranded(""), []string{s1, s2first}; !slices.Equal(got, want) {
		t.Fatalf("stranded %v, want %v", got, want)
	}
	if got := stranded("?route=gone"); len(got) != 2 {
		t.Fatalf("stranded of route gone: %v", got)
	}
	if got := stranded("?route=live"); len(got) != 0 {
		t.Fatalf("stranded of a live route: %v", got)
	}

	// Refused: bad bodies, a route without a webhook, an unknown event.
	for _, body := range []string{"", "{}", `{"route": ""}`, `{"route": "live", "x": 1}`, "not json", `{"route": 7}`} {
		if st := reroute(s1, body); st != http.StatusBadRequest {
			t.Errorf("reroute with body %q: %d, want 400", body, st)
		}
	}
	if st := reroute(s1, `{"route": "nowhere"}`); st != http.StatusConflict {
		t.Errorf("reroute to a route without a webhook: %d, want 409", st)
	}
	if st := reroute("nope:upload.confirmed", `{"route": "live"}`); st != http.StatusNotFound {
		t.Errorf("reroute of an unknown event: %d, want 404", st)
	}
	if st := reroute("", `{"route": "live"}`); st != http.StatusNotFound {
		t.Errorf("reroute without an id: %d, want 404", st)
	}
	if got := stranded(""); len(got) != 2 || rcv.attempts(s1) != 0 {
		t.Fatalf("a refused reroute changed something: stranded %v, %d attempts", got, rcv.attempts(s1))
	}

	// Rerouted, it is delivered by the live route's webhook.
	rcv.down.Store(false)
	if st := reroute(s1, `{"route": "live"}`); st != http.StatusNoContent {
		t.Fatalf("reroute: %d", st)
	}
	rcv.waitDelivered(s1)
	rcv.waitDelivered(retrying)
	// Dropped, the upload's next event takes its place.
	for range 2 {
		if _, st := adminServe(t, api.serveDrop, "POST", dropPrefix+s2first, ""); st != http.StatusNoContent {
			t.Fatalf("drop: %d", st)
		}
	}
	if got := stranded(""); !slices.Equal(got, []string{s2}) {
		t.Fatalf("stranded after a drop: %v, want [%s]", got, s2)
	}
	// A parked event can be rerouted too.
	if st := reroute(s3, `{"route": "live"}`); st != http.StatusNoContent {
		t.Fatalf("reroute of a parked event: %d", st)
	}
	rcv.waitDelivered(s3)
	if rcv.attempts(s2first) != 0 {
		t.Errorf("the dropped event was delivered")
	}

	// A route whose webhook stops strands its waiting events.
	stop()
	later := adminEvent(t, l, "live", "l3", storage.StatusConfirmed)
	if got := stranded(""); !slices.Equal(got, []string{s2, later}) {
		t.Fatalf("stranded after the live webhook stopped: %v, want [%s %s]", got, s2, later)
	}
	if st := reroute(s2, `{"route": "live"}`); st != http.StatusConflict {
		t.Errorf("reroute to a stopped webhook: %d, want 409", st)
	}
}

// TestAdminStrandedAfterRename: through Caddy's admin endpoint, the events
// of a route renamed by a reload show as stranded and reach the
// application once rerouted to the new name.
func TestAdminStrandedAfterRename(t *testing.T) {
	s, rcv := newHookSite(t)
	rcv.down.Store(true)
	admin := fmt.Sprintf("127.0.0.1:%d", realservers.FreePort(t))
	withAdmin := func(policy string) string {
		plain := s.caddyfile(policy)
		cfg := strings.Replace(plain, "admin off", "admin "+admin, 1)
		if cfg == plain {
			t.Fatal("the site's global options no longer turn the admin endpoint off")
		}
		return cfg
	}
	policy := hookPolicy(rcv.srv.URL, "max_attempts 1000")
	s.load(withAdmin(policy))
	call := func(method, path, body string) response {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+admin+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		return do(t, noRedirect, req)
	}
	stranded := func() []adminParked {
		t.Helper()
		var list adminListing
		resp := call("GET", "/upload/outbox/stranded", "")
		if resp.StatusCode != http.StatusOK || json.Unmarshal(resp.body, &list) != nil || list.Events == nil {
			t.Fatalf("GET stranded: %d %s", resp.StatusCode, resp.body)
		}
		return list.Events
	}

	id := confirmUpload(s, "alice")
	ev := id + ":upload.confirmed"
	eventually(t, "a failed attempt", func() bool { return rcv.attempts(ev) > 0 })
	if l := stranded(); len(l) != 0 {
		t.Fatalf("stranded while the route has its webhook: %+v", l)
	}

	renamed := strings.Replace(policy, "name docs", "name papers", 1)
	if renamed == policy {
		t.Fatal("the policy no longer names its route docs")
	}
	if err := loadCaddyfile(withAdmin(renamed)); err != nil {
		t.Fatal(err)
	}
	s.waitServing()
	var l []adminParked
	eventually(t, "the event stranded", func() bool { l = stranded(); return len(l) > 0 })
	if len(l) != 1 || l[0].ID != ev || l[0].Route != "docs" || l[0].Ledger != ledgerPath(s) || l[0].Record.ID != id {
		t.Fatalf("stranded %+v", l)
	}

	// The old name has no webhook any more: 409 in Caddy's error shape.
	resp := call("POST", reroutePrefix+ev, `{"route": "docs"}`)
	var apiErr struct {
		Error string `json:"error"`
	}
	if resp.StatusCode != http.StatusConflict || json.Unmarshal(resp.body, &apiErr) != nil || !strings.Contains(apiErr.Error, "docs") {
		t.Errorf("reroute to the old name: %d %s", resp.StatusCode, resp.body)
	}
	rcv.down.Store(false)
	if resp := call("POST", reroutePrefix+ev, `{"route": "papers"}`); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("reroute: %d %s", resp.StatusCode, resp.body)
	}
	rcv.waitDelivered(ev)
	if l := stranded(); len(l) != 0 {
		t.Errorf("stranded after the reroute: %+v", l)
	}
}
