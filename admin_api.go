package caddyupload

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"

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
// Any other method gets 405 with an Allow header.
// It reaches the outboxes this process has open through the registry that
// ledger modules register them with (registerOutbox).
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

// openOutboxes are the outboxes of the ledgers open in this process, by
// name. A ledger shared by several configs (during a reload, the old and
// the new) is registered by each of them and stays listed until the last
// one releases it.
var openOutboxes = struct {
	sync.Mutex
	m map[string]*openOutbox
}{m: make(map[string]*openOutbox)}

type openOutbox struct {
	name   string
	outbox storage.Outbox
	users  int
}

// registerOutbox lists o under name (what the admin API shows as the
// event's ledger, e.g. its file) until release is called. A ledger module
// whose ledger has an outbox calls it in Provision and release in Cleanup.
func registerOutbox(name string, o storage.Outbox) (release func()) {
	openOutboxes.Lock()
	defer openOutboxes.Unlock()
	e := openOutboxes.m[name]
	if e == nil {
		e = &openOutbox{name: name}
		openOutboxes.m[name] = e
	}
	// The newest registration wins: it is the handle now in use.
	e.outbox = o
	e.users++
	var once sync.Once
	return func() {
		once.Do(func() {
			openOutboxes.Lock()
			defer openOutboxes.Unlock()
			if e.users--; e.users == 0 && openOutboxes.m[name] == e {
				delete(openOutboxes.m, name)
			}
		})
	}
}

// outboxes lists the registered outboxes, by name.
func outboxes() []openOutbox {
	openOutboxes.Lock()
	out := make([]openOutbox, 0, len(openOutboxes.m))
	for _, e := range openOutboxes.m {
		out = append(out, *e)
	}
	openOutboxes.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// parkedEvent is one entry of the parked list.
type parkedEvent struct {
	// Ledger is the name the event's ledger is registered under: for the
	// bolt ledger, its file.
	Ledger string `json:"ledger"`
	*storage.Event
}

// allowMethods answers 405 with an Allow header unless r uses one of
// methods.
func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) error {
	for _, m := range methods {
		if r.Method == m {
			return nil
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
}

func (adminAPI) serveParked(w http.ResponseWriter, r *http.Request) error {
	if err := allowMethods(w, r, http.MethodGet, http.MethodHead); err != nil {
		return err
	}
	route := r.URL.Query().Get("route")
	list := []parkedEvent{}
	for _, o := range outboxes() {
		evs, _, err := o.outbox.ParkedEvents(r.Context(), route, "", adminParkedLimit)
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("listing parked events of %s: %v", o.name, err)}
		}
		for _, ev := range evs {
			list = append(list, parkedEvent{Ledger: o.name, Event: ev})
		}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(list)
}

func (adminAPI) serveReplay(w http.ResponseWriter, r *http.Request) error {
	if err := allowMethods(w, r, http.MethodPost); err != nil {
		return err
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
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("replaying in %s: %v", o.name, err)}
		}
		webhook.WakeAll()
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no event %q in any open ledger", id)}
}

// Interface guards
var _ caddy.AdminRouter = adminAPI{}
