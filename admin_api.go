package caddyupload

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddyupload/caddyupload/internal/webhook"
	"github.com/caddyupload/caddyupload/storage"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminParkedLimit bounds the parked events listed per ledger.
const adminParkedLimit = 1000

const replayPrefix = "/upload/outbox/replay/"

// adminAPI serves the webhook outbox on Caddy's admin endpoint:
//
//	GET  /upload/outbox/parked[?route=<name>]  parked events as a JSON list
//	POST /upload/outbox/replay/<event id>      replays one: 204, or 404
//
// It reaches the bbolt ledgers this process has open through their pool.
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.upload",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Routes returns the outbox routes.
func (a adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/upload/outbox/parked", Handler: caddy.AdminHandlerFunc(a.serveParked)},
		{Pattern: replayPrefix, Handler: caddy.AdminHandlerFunc(a.serveReplay)},
	}
}

// parkedEvent is one entry of the parked list.
type parkedEvent struct {
	// Ledger is the file the event waits in.
	Ledger string `json:"ledger"`
	*storage.Event
}

type openOutbox struct {
	path   string
	outbox storage.Outbox
}

// outboxes are the ledgers open in this process, by path.
func outboxes() []openOutbox {
	var out []openOutbox
	ledgers.Range(func(key, val any) bool {
		if l, ok := val.(sharedLedger); ok {
			out = append(out, openOutbox{path: fmt.Sprint(key), outbox: l.Ledger})
		}
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out
}

func (adminAPI) serveParked(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed")}
	}
	route := r.URL.Query().Get("route")
	list := []parkedEvent{}
	for _, o := range outboxes() {
		evs, err := o.outbox.ParkedEvents(r.Context(), route, adminParkedLimit)
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("listing parked events of %s: %v", o.path, err)}
		}
		for _, ev := range evs {
			list = append(list, parkedEvent{Ledger: o.path, Event: ev})
		}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(list)
}

func (adminAPI) serveReplay(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed")}
	}
	id := strings.TrimPrefix(r.URL.Path, replayPrefix)
	if id == "" || strings.Contains(id, "/") {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("no such event")}
	}
	for _, o := range outboxes() {
		err := o.outbox.ReplayEvent(r.Context(), id)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("replaying in %s: %v", o.path, err)}
		}
		webhook.WakeAll()
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no event %q in any open ledger", id)}
}

// Interface guards
var _ caddy.AdminRouter = adminAPI{}
