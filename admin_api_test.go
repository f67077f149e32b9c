package caddyupload

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/caddyupload/caddyupload/internal/realservers"
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
	if st := adminCall("GET", "/upload/outbox/replay/"+ev, nil); st != http.StatusMethodNotAllowed {
		t.Errorf("GET replay: %d", st)
	}
	if st := adminCall("POST", "/upload/outbox/parked", nil); st != http.StatusMethodNotAllowed {
		t.Errorf("POST parked: %d", st)
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
