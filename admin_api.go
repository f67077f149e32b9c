package caddyupload

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddyupload/caddyupload/internal/webhook"
	"github.com/caddyupload/caddyupload/storage"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

const (
	// adminPage and adminMaxPage are the default and the largest page of
	// parked events.
	adminPage    = 100
	adminMaxPage = 1000
	// adminScanLimit bounds the waiting events a stranded listing reads
	// per ledger.
	adminScanLimit = 10000
)

const (
	replayPrefix  = "/upload/outbox/replay/"
	reroutePrefix = "/upload/outbox/reroute/"
	dropPrefix    = "/upload/outbox/drop/"
)

// adminAPI serves the webhook outbox on Caddy's admin endpoint:
//
//	GET  /upload/outbox/parked[?route=&limit=&after=]  parked events, a page at a time
//	GET  /upload/outbox/stranded[?route=]              waiting events no webhook delivers
//	POST /upload/outbox/replay/<event id>              replays a parked one: 204, or 404
//	POST /upload/outbox/reroute/<event id>             {"route": "<name>"}: hands one to
//	                                                   that route's webhook: 204, 404 or 409
//	POST /upload/outbox/drop/<event id>                removes one for good: 204
//
// Listings answer {"events": [...], ...}, each event with the ledger it is
// in. Errors answer Caddy's {"error": "..."} with 400 (bad input), 404,
// 405 (with Allow), 409 or 500.
// It reaches the outboxes this process has open through the registry that
// ledger modules register them with (registerOutbox), and the running
// webhooks through the webhook package.
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
		{Pattern: "/upload/outbox/stranded", Handler: caddy.AdminHandlerFunc(a.serveStranded)},
		{Pattern: replayPrefix, Handler: caddy.AdminHandlerFunc(a.serveReplay)},
		{Pattern: reroutePrefix, Handler: caddy.AdminHandlerFunc(a.serveReroute)},
		{Pattern: dropPrefix, Handler: caddy.AdminHandlerFunc(a.serveDrop)},
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

// listedEvent is one entry of a listing.
type listedEvent struct {
	// Ledger is the name the event's ledger is registered under: for the
	// bolt ledger, its file.
	Ledger string `json:"ledger"`
	*storage.Event
}

// parkedPage is the answer of the parked listing.
type parkedPage struct {
	Events []listedEvent `json:"events"`
	// Next is the after of the following page; "" after the last.
	Next string `json:"next"`
}

// strandedList is the answer of the stranded listing.
type strandedList struct {
	Events []listedEvent `json:"events"`
	// Complete is false when a ledger held more waiting events than one
	// listing reads: some stranded ones may be missing.
	Complete bool `json:"complete"`
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

func adminBadRequest(format string, args ...any) error {
	return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf(format, args...)}
}

// adminCursor is the position of a parked page across ledgers, which are
// listed one after the other in name order: in ledger L from the ledger's
// own cursor A, or, when Done, in the ledgers after L.
type adminCursor struct {
	L string `json:"l"`
	A string `json:"a,omitempty"`
	D bool   `json:"d,omitempty"`
}

func (c adminCursor) String() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func parseAdminCursor(s string) (*adminCursor, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	c := new(adminCursor)
	if err != nil || json.Unmarshal(b, c) != nil || c.L == "" {
		return nil, adminBadRequest("after: not a cursor this endpoint handed out")
	}
	return c, nil
}

func (adminAPI) serveParked(w http.ResponseWriter, r *http.Request) error {
	if err := allowMethods(w, r, http.MethodGet, http.MethodHead); err != nil {
		return err
	}
	q := r.URL.Query()
	route := q.Get("route")
	limit := adminPage
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > adminMaxPage {
			return adminBadRequest("limit: expected 1 to %d", adminMaxPage)
		}
		limit = n
	}
	cur, err := parseAdminCursor(q.Get("after"))
	if err != nil {
		return err
	}
	page := parkedPage{Events: []listedEvent{}}
	prev := ""
	for _, o := range outboxes() {
		after := ""
		if cur != nil {
			if o.name < cur.L || (o.name == cur.L && cur.D) {
				continue
			}
			if o.name == cur.L {
				after = cur.A
			}
		}
		if len(page.Events) == limit {
			// Further ledgers may hold more.
			page.Next = adminCursor{L: prev, D: true}.String()
			break
		}
		evs, next, err := o.outbox.ParkedEvents(r.Context(), route, after, limit-len(page.Events))
		if errors.Is(err, storage.ErrBadCursor) {
			return adminBadRequest("after: not a cursor this endpoint handed out")
		}
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("listing parked events of %s: %v", o.name, err)}
		}
		for _, ev := range evs {
			page.Events = append(page.Events, listedEvent{Ledger: o.name, Event: ev})
		}
		if next != "" {
			page.Next = adminCursor{L: o.name, A: next}.String()
			break
		}
		prev = o.name
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// serveStranded lists the events waiting for delivery (not parked) whose
// route has no webhook running on their ledger: the route was renamed or
// removed, or lost its webhook. Nothing delivers them until an operator
// reroutes or drops them. Of an upload's events only the earliest shows;
// the next one waits for it.
func (adminAPI) serveStranded(w http.ResponseWriter, r *http.Request) error {
	if err := allowMethods(w, r, http.MethodGet, http.MethodHead); err != nil {
		return err
	}
	route := r.URL.Query().Get("route")
	// Every waiting event, whenever due: an event of a route without a
	// webhook is never delivered, whether due now or later.
	until := time.Now().AddDate(100, 0, 0)
	list := strandedList{Events: []listedEvent{}, Complete: true}
	for _, o := range outboxes() {
		evs, err := o.outbox.DueEvents(r.Context(), route, until, adminScanLimit)
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("listing waiting events of %s: %v", o.name, err)}
		}
		if len(evs) == adminScanLimit {
			list.Complete = false
		}
		for _, ev := range evs {
			if !webhook.Serving(o.outbox, ev.Route) {
				list.Events = append(list.Events, listedEvent{Ledger: o.name, Event: ev})
			}
		}
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

// adminEventID is the event id at the end of r's path after prefix.
func adminEventID(r *http.Request, prefix string) (string, error) {
	id := strings.TrimPrefix(r.URL.Path, prefix)
	if id == "" || strings.Contains(id, "/") {
		return "", caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("no such event")}
	}
	return id, nil
}

func (adminAPI) serveReplay(w http.ResponseWriter, r *http.Request) error {
	if err := allowMethods(w, r, http.MethodPost); err != nil {
		return err
	}
	id, err := adminEventID(r, replayPrefix)
	if err != nil {
		return err
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

// serveReroute hands an event, waiting or parked, to the webhook of
// another route on its ledger: the route must have one running, or the
// event would only be stranded again.
func (adminAPI) serveReroute(w http.ResponseWriter, r *http.Request) error {
	if err := allowMethods(w, r, http.MethodPost); err != nil {
		return err
	}
	id, err := adminEventID(r, reroutePrefix)
	if err != nil {
		return err
	}
	var body struct {
		Route string `json:"route"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.Route == "" {
		return adminBadRequest(`the body must be {"route": "<route name>"}`)
	}
	served := false
	for _, o := range outboxes() {
		if !webhook.Serving(o.outbox, body.Route) {
			continue
		}
		served = true
		err := o.outbox.RerouteEvent(r.Context(), id, body.Route)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("rerouting in %s: %v", o.name, err)}
		}
		webhook.WakeAll()
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if !served {
		return caddy.APIError{HTTPStatus: http.StatusConflict, Err: fmt.Errorf("route %q has no webhook running", body.Route)}
	}
	return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no event %q in a ledger where route %q has its webhook", id, body.Route)}
}

// serveDrop removes an event for good, waiting or parked; the next event
// of its upload, if any, becomes due. Dropping an event that is not there
// (any more) succeeds, like a repeated DELETE.
func (adminAPI) serveDrop(w http.ResponseWriter, r *http.Request) error {
	if err := allowMethods(w, r, http.MethodPost); err != nil {
		return err
	}
	id, err := adminEventID(r, dropPrefix)
	if err != nil {
		return err
	}
	for _, o := range outboxes() {
		if err := o.outbox.AckEvent(r.Context(), id); err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("dropping in %s: %v", o.name, err)}
		}
	}
	webhook.WakeAll()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Interface guards
var _ caddy.AdminRouter = adminAPI{}
