package caddyupload

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddyupload/caddyupload/storage"
	"github.com/caddyupload/caddyupload/storage/boltledger"
)

func init() {
	caddy.RegisterModule(adminHealth{})
}

// healthTimeout bounds each probe of a health check.
const healthTimeout = 5 * time.Second

// healthProbeID is the record id and object key a health check asks for:
// neither exists (ids and keys have another form), and a "not found" is
// the healthy answer.
const healthProbeID = ".caddyupload-health-probe"

// adminHealth answers, on Caddy's admin endpoint,
//
//	GET /upload/health
//
// with 200 and {"status":"ok", "ledgers":[…], "stores":[…], "oidc":[…]}
// when every ledger, object store and OIDC provider the upload routes of
// this process use works, and 503 with "status":"down" when any does not.
// A ledger works when it has not stopped after a failed commit and a read
// succeeds; a store when a HEAD of a missing object is answered; a
// provider when its key set has been fetched.
type adminHealth struct{}

// CaddyModule returns the Caddy module information.
func (adminHealth) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.upload_health",
		New: func() caddy.Module { return new(adminHealth) },
	}
}

// Routes returns the health route.
func (a adminHealth) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/upload/health", Handler: caddy.AdminHandlerFunc(a.serveHealth)}}
}

// failureReporter is a ledger that can stop after a failed commit and say
// so (the bolt ledger).
type failureReporter interface {
	Failed() error
}

// readinessReporter is an authenticator that depends on a remote
// provider and knows whether it has what it needs from it (OIDC).
type readinessReporter interface {
	// ready reports the provider's name (its issuer) and whether its key
	// set has been fetched.
	ready() (name string, ok bool)
}

// healthEntry is what one provisioned route depends on.
type healthEntry struct {
	route  string
	store  storage.ObjectStore
	ledger storage.Ledger
	auth   authenticator
	// handler is the route itself, for the records admin API.
	handler *Handler
}

// openRoutes are the provisioned routes of every config in this process,
// by registration. During a reload the old and the new config both list
// theirs until the old one is cleaned up.
var openRoutes = struct {
	sync.Mutex
	next int
	m    map[int]healthEntry
}{m: make(map[int]healthEntry)}

// registerHealth lists h's dependencies for the health endpoint and the
// ledger_failed gauge until release is called (in Cleanup).
func registerHealth(h *Handler) (release func()) {
	e := healthEntry{route: h.Name, store: unwrapStore(h.store), ledger: h.ledger, auth: h.auth, handler: h}
	openRoutes.Lock()
	defer openRoutes.Unlock()
	id := openRoutes.next
	openRoutes.next++
	openRoutes.m[id] = e
	var once sync.Once
	return func() {
		once.Do(func() {
			openRoutes.Lock()
			delete(openRoutes.m, id)
			openRoutes.Unlock()
		})
	}
}

func routeEntries() []healthEntry {
	openRoutes.Lock()
	defer openRoutes.Unlock()
	out := make([]healthEntry, 0, len(openRoutes.m))
	for _, e := range openRoutes.m {
		out = append(out, e)
	}
	return out
}

// anyLedgerFailed is the value of caddy_upload_ledger_failed.
func anyLedgerFailed() float64 {
	for _, e := range routeEntries() {
		if f, ok := e.ledger.(failureReporter); ok && f.Failed() != nil {
			return 1
		}
	}
	return 0
}

// healthPart is the state of one dependency, shared by the routes listed.
type healthPart struct {
	Name   string   `json:"name"`
	Status string   `json:"status"` // "ok" or "down"
	Error  string   `json:"error,omitempty"`
	Routes []string `json:"routes"`
}

type healthReport struct {
	Status  string        `json:"status"`
	Ledgers []*healthPart `json:"ledgers"`
	Stores  []*healthPart `json:"stores"`
	OIDC    []*healthPart `json:"oidc"`
}

// check is one dependency to probe, once however many routes share it.
type check struct {
	part  *healthPart
	probe func(context.Context) error
}

func (adminHealth) serveHealth(w http.ResponseWriter, r *http.Request) error {
	if err := allowMethods(w, r, http.MethodGet, http.MethodHead); err != nil {
		return err
	}
	rep := healthReport{Status: "ok", Ledgers: []*healthPart{}, Stores: []*healthPart{}, OIDC: []*healthPart{}}
	checks := map[string]*check{}
	add := func(list *[]*healthPart, kind, name, route string, probe func(context.Context) error) {
		c := checks[kind+"\x00"+name]
		if c == nil {
			c = &check{part: &healthPart{Name: name, Routes: []string{}}, probe: probe}
			checks[kind+"\x00"+name] = c
			*list = append(*list, c.part)
		}
		c.part.Routes = append(c.part.Routes, route)
	}
	for _, e := range routeEntries() {
		add(&rep.Ledgers, "ledger", ledgerName(e.ledger), e.route, ledgerProbe(e.ledger))
		add(&rep.Stores, "store", e.store.ID(), e.route, storeProbe(e.store))
		if rr, ok := e.auth.(readinessReporter); ok {
			name, ready := rr.ready()
			add(&rep.OIDC, "oidc", name, e.route, func(context.Context) error {
				if !ready {
					return errors.New("the provider's key set has not been fetched yet")
				}
				return nil
			})
		}
	}

	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.part.Status = "ok"
			if err := c.probe(ctx); err != nil {
				c.part.Status, c.part.Error = "down", err.Error()
			}
		}()
	}
	wg.Wait()
	for _, c := range checks {
		sort.Strings(c.part.Routes)
		if c.part.Status != "ok" {
			rep.Status = "down"
		}
	}
	for _, l := range [][]*healthPart{rep.Ledgers, rep.Stores, rep.OIDC} {
		sort.Slice(l, func(i, j int) bool { return l[i].Name < l[j].Name })
	}
	status := http.StatusOK
	if rep.Status != "ok" {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, rep)
	return nil
}

// ledgerName names a ledger by the durable store behind it (a bolt file).
func ledgerName(l storage.Ledger) string {
	if id, ok := l.(storage.Identified); ok {
		return id.Identity()
	}
	return fmt.Sprintf("%T", l)
}

func ledgerProbe(l storage.Ledger) func(context.Context) error {
	return func(ctx context.Context) error {
		if f, ok := l.(failureReporter); ok {
			if err := f.Failed(); err != nil {
				return err
			}
		}
		_, err := l.Get(ctx, healthProbeID)
		if err == nil || errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("reading the ledger: %w", err)
	}
}

func storeProbe(s storage.ObjectStore) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := s.Head(ctx, healthProbeID)
		if err == nil || errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		return err
	}
}

// ready implements readinessReporter.
func (a *oidcAuth) ready() (string, bool) {
	return strings.TrimPrefix(a.issuerSource, "oidc "), a.verifier.Ready()
}

// Interface guards
var (
	_ caddy.AdminRouter = adminHealth{}
	_ failureReporter   = (*boltledger.Ledger)(nil)
	_ readinessReporter = (*oidcAuth)(nil)
)
