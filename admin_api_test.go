package caddyupload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddyupload/caddyupload/internal/realservers"
	"github.com/caddyupload/caddyupload/storage"
)

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
		var list []adminParked
		if st := adminCall("GET", "/upload/outbox/parked"+query, &list); st != http.StatusOK {
			t.Fatalf("GET parked: %d", st)
		}
		return list
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
		var list []adminParked
		if st != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &list) != nil {
			t.Fatalf("GET parked: %d %s", st, w.Body)
		}
		return list
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
