package caddyupload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddyupload/caddyupload/storage"
)

func init() {
	caddy.RegisterModule(adminRecords{})
}

const (
	recordsPath   = "/upload/records"
	recordsPrefix = recordsPath + "/"
	// abortedByOperator is the reason an aborted record carries when an
	// operator, not its owner, aborted it.
	abortedByOperator = "aborted through the admin API"
)

// recordsBatch is the page an abort or purge of many records works
// through at a time (a variable: tests page with small ones).
var recordsBatch = 500

// adminRecords lets operators find, inspect, abort and purge upload
// records on Caddy's admin endpoint:
//
//	GET  /upload/records[?route=&subject=&status=&older_than=&limit=&after=]
//	     records, newest first, a page at a time: {"records": [...], "next": "..."}
//	GET  /upload/records/<id>         one record
//	POST /upload/records/<id>/abort   aborts it as its owner's DELETE does
//	                                  (a pending upload, or a confirmed one:
//	                                  a takedown) and answers the record
//	POST /upload/records/abort?subject=[&route=]
//	     aborts every pending upload of a subject: {"aborted": n, "skipped": n}
//	POST /upload/records/purge?older_than=[&route=&subject=&status=]
//	     deletes ended records (never pending ones, never objects):
//	     {"purged": n, "waiting": n}
//
// Records are shown with what an operator needs of the module's own
// bookkeeping (route, subject, source, store, kind, reason, etag), never a
// presigned URL or a storage upload id. older_than is a duration ("30d",
// "12h") and selects records created before now minus it.
// Errors answer Caddy's {"error": "..."} with 400 (bad input), 404, 405
// (with Allow), 409 or 500/502.
//
// It reaches the records through the upload routes this process runs
// (registerHealth): every ledger they use is listed once, however many
// routes share it, and an abort goes through the route that created the
// record, so that its locks, webhook and metrics see it.
type adminRecords struct{}

// CaddyModule returns the Caddy module information.
func (adminRecords) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.upload_records",
		New: func() caddy.Module { return new(adminRecords) },
	}
}

// Routes returns the records routes.
func (a adminRecords) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: recordsPath, Handler: caddy.AdminHandlerFunc(a.serveList)},
		{Pattern: recordsPrefix, Handler: caddy.AdminHandlerFunc(a.serveRecord)},
		{Pattern: usagePath, Handler: caddy.AdminHandlerFunc(a.serveUsage)},
	}
}

// adminRecord is a record as the admin API shows it.
type adminRecord struct {
	// Ledger is the name of the ledger the record is in (the bolt file).
	Ledger string `json:"ledger"`
	*storage.Record
	Route   string `json:"route"`
	Subject string `json:"subject"`
	Source  string `json:"source,omitempty"`
	Store   string `json:"store"`
	Kind    string `json:"kind"`
	// ExpiresAt is when the sweeper acts on the record next (a pending
	// upload expires, a closed one has its object deleted once more, a
	// retired record is deleted); absent when nothing is due.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	UpdatedAt time.Time  `json:"updated_at"`
	Reason    string     `json:"reason,omitempty"`
	ETag      string     `json:"etag,omitempty"`
	PartSize  int64      `json:"part_size,omitempty"`
	PartCount int32      `json:"part_count,omitempty"`
	// Recheck marks a closed record whose upload URL may still write its
	// object: the sweeper deletes it once more at ExpiresAt, and a purge
	// keeps the record until then.
	Recheck bool `json:"recheck,omitempty"`
}

func newAdminRecord(ledger string, rec *storage.Record) adminRecord {
	in := rec.Internal
	r := adminRecord{
		Ledger: ledger, Record: rec,
		Route: in.Route, Subject: in.Subject, Source: in.Source, Store: in.Store, Kind: in.Kind,
		UpdatedAt: in.UpdatedAt, Reason: in.Reason, ETag: in.ETag, PartSize: in.PartSize, PartCount: in.PartCount,
		Recheck: in.Recheck && rec.Status != storage.StatusConfirmed,
	}
	if rec.NeedsSweep() {
		t := in.ExpiresAt
		r.ExpiresAt = &t
	}
	return r
}

// recordsPage is the answer of the listing.
type recordsPage struct {
	Records []adminRecord `json:"records"`
	// Next is the cursor of the next page (the after parameter); empty
	// after the last.
	Next string `json:"next,omitempty"`
}

// namedLedger is a ledger of the running routes, by name.
type namedLedger struct {
	name   string
	ledger storage.Ledger
}

// runningHandlers lists the upload routes of every config in this process,
// the newest registration first: during a reload, the new config's route
// of a name comes before the old one's.
func runningHandlers() []*Handler {
	openRoutes.Lock()
	defer openRoutes.Unlock()
	ids := make([]int, 0, len(openRoutes.m))
	for id := range openRoutes.m {
		ids = append(ids, id)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(ids)))
	out := make([]*Handler, 0, len(ids))
	for _, id := range ids {
		if h := openRoutes.m[id].handler; h != nil {
			out = append(out, h)
		}
	}
	return out
}

// runningLedgers lists each ledger of the running routes once, in name
// order, however many routes (and configs) share it.
func runningLedgers() []namedLedger {
	seen := map[string]bool{}
	var out []namedLedger
	for _, h := range runningHandlers() {
		name := recordsLedgerName(h.ledger)
		if !seen[name] {
			seen[name] = true
			out = append(out, namedLedger{name: name, ledger: h.ledger})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// recordsLedgerName names a ledger by the durable store behind it (a bolt
// file, a database), or else by the handle itself: two ledgers that
// cannot say what they store are never taken for one.
func recordsLedgerName(l storage.Ledger) string {
	if _, ok := l.(storage.Identified); ok {
		return ledgerName(l)
	}
	return fmt.Sprintf("%T@%p", l, l)
}

// handlerOf finds the running route that created rec, found in ledger:
// the route of its name, on its store and that ledger.
func handlerOf(ledger string, rec *storage.Record) *Handler {
	for _, h := range runningHandlers() {
		if h.routes(rec) && recordsLedgerName(h.ledger) == ledger {
			return h
		}
	}
	return nil
}

// recordsQuery reads the filters shared by the listing, the subject-wide
// abort and the purge.
func recordsQuery(r *http.Request) (storage.ListQuery, error) {
	v := r.URL.Query()
	q := storage.ListQuery{Route: v.Get("route"), Subject: v.Get("subject"), Status: storage.Status(v.Get("status"))}
	switch q.Status {
	case "", storage.StatusPending, storage.StatusConfirmed, storage.StatusAborted, storage.StatusExpired, storage.StatusRejected:
	default:
		return q, adminBadRequest("status: expected pending, confirmed, aborted, expired or rejected")
	}
	if s := v.Get("older_than"); s != "" {
		d, err := caddy.ParseDuration(s)
		if err != nil || d < 0 {
			return q, adminBadRequest("older_than: expected a duration such as 30d or 12h")
		}
		q.Before = time.Now().Add(-d)
	}
	return q, nil
}

// serveList pages through the records of every running ledger, one ledger
// after the other in name order, each newest first.
func (adminRecords) serveList(w http.ResponseWriter, r *http.Request) error {
	if err := allowMethods(w, r, http.MethodGet, http.MethodHead); err != nil {
		return err
	}
	q, err := recordsQuery(r)
	if err != nil {
		return err
	}
	limit := adminPage
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > adminMaxPage {
			return adminBadRequest("limit: expected 1 to %d", adminMaxPage)
		}
		limit = n
	}
	cur, err := parseAdminCursor(r.URL.Query().Get("after"))
	if err != nil {
		return err
	}
	page := recordsPage{Records: []adminRecord{}}
	prev := ""
	for _, l := range runningLedgers() {
		q.After = ""
		if cur != nil {
			if l.name < cur.L || (l.name == cur.L && cur.D) {
				continue
			}
			if l.name == cur.L {
				q.After = cur.A
			}
		}
		if len(page.Records) == limit {
			// Further ledgers may hold more.
			page.Next = adminCursor{L: prev, D: true}.String()
			break
		}
		q.Limit = limit - len(page.Records)
		recs, next, err := l.ledger.List(r.Context(), q)
		if errors.Is(err, storage.ErrBadCursor) {
			return adminBadRequest("after: not a cursor this endpoint handed out")
		}
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("listing the records of %s: %v", l.name, err)}
		}
		for _, rec := range recs {
			page.Records = append(page.Records, newAdminRecord(l.name, rec))
		}
		if next != "" {
			page.Next = adminCursor{L: l.name, A: next}.String()
			break
		}
		prev = l.name
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// serveRecord serves the paths below /upload/records/.
func (a adminRecords) serveRecord(w http.ResponseWriter, r *http.Request) error {
	rest := strings.TrimPrefix(r.URL.Path, recordsPrefix)
	switch rest {
	case "abort":
		return a.serveAbortSubject(w, r)
	case "purge":
		return a.servePurge(w, r)
	}
	id, action, _ := strings.Cut(rest, "/")
	if id == "" || strings.Contains(action, "/") || (action != "" && action != "abort") {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("no such path")}
	}
	if action == "abort" {
		return a.serveAbort(w, r, id)
	}
	if err := allowMethods(w, r, http.MethodGet, http.MethodHead); err != nil {
		return err
	}
	l, rec, err := findRecord(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newAdminRecord(l, rec))
	return nil
}

// findRecord looks for record id in every running ledger.
func findRecord(ctx context.Context, id string) (string, *storage.Record, error) {
	for _, l := range runningLedgers() {
		rec, err := l.ledger.Get(ctx, id)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return "", nil, caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("reading %s: %v", l.name, err)}
		}
		return l.name, rec, nil
	}
	return "", nil, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no record %q in any ledger of the running upload routes", id)}
}

// serveAbort aborts one record through the route that created it, as its
// owner's DELETE would, and answers the record as it then stands: aborted,
// or as it was if it had already ended otherwise (expired, rejected).
func (adminRecords) serveAbort(w http.ResponseWriter, r *http.Request, id string) error {
	if err := allowMethods(w, r, http.MethodPost); err != nil {
		return err
	}
	l, rec, err := findRecord(r.Context(), id)
	if err != nil {
		return err
	}
	h := handlerOf(l, rec)
	if h == nil {
		return caddy.APIError{HTTPStatus: http.StatusConflict, Err: fmt.Errorf("record %q belongs to route %q on store %s, which is not running here: only that route aborts it", id, rec.Internal.Route, rec.Internal.Store)}
	}
	out, err := h.abortRecord(r.Context(), rec, abortedByOperator)
	if err != nil {
		return abortFailed(id, err)
	}
	writeJSON(w, http.StatusOK, newAdminRecord(l, out))
	return nil
}

// abortFailed turns an abort's error (a ledger or storage failure) into
// the admin API's answer.
func abortFailed(id string, err error) error {
	status := http.StatusInternalServerError
	var ae *apiError
	if errors.As(err, &ae) && ae.Status >= 500 {
		status = ae.Status // 502 or 503: storage or the ledger failed
	}
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf("aborting %s: %v", id, err)}
}

// abortCount is the answer of the subject-wide abort.
type abortCount struct {
	Aborted int `json:"aborted"`
	// Skipped counts pending records of routes not running in this
	// process: only the route that created a record aborts it.
	Skipped int `json:"skipped"`
}

// serveAbortSubject aborts every pending upload of a subject (on one
// route, or on all), a page at a time.
func (adminRecords) serveAbortSubject(w http.ResponseWriter, r *http.Request) error {
	if err := allowMethods(w, r, http.MethodPost); err != nil {
		return err
	}
	q, err := recordsQuery(r)
	if err != nil {
		return err
	}
	if q.Subject == "" {
		return adminBadRequest("subject: required (the subject whose pending uploads to abort)")
	}
	if q.Status != "" || !q.Before.IsZero() {
		return adminBadRequest("only route and subject select the uploads to abort: every pending one of the subject")
	}
	q.Status, q.Limit = storage.StatusPending, recordsBatch
	var n abortCount
	for _, l := range runningLedgers() {
		q.After = ""
		for {
			recs, next, err := l.ledger.List(r.Context(), q)
			if err != nil {
				return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("listing the records of %s (%d aborted so far): %v", l.name, n.Aborted, err)}
			}
			for _, rec := range recs {
				h := handlerOf(l.name, rec)
				if h == nil {
					n.Skipped++
					continue
				}
				if _, err := h.abortRecord(r.Context(), rec, abortedByOperator); err != nil {
					return abortFailed(fmt.Sprintf("%s (%d aborted so far)", rec.ID, n.Aborted), err)
				}
				n.Aborted++
			}
			if next == "" {
				break
			}
			q.After = next
		}
	}
	writeJSON(w, http.StatusOK, n)
	return nil
}

// purgeCount is the answer of a purge.
type purgeCount struct {
	Purged int `json:"purged"`
	// Waiting counts ended records kept because the sweeper still has to
	// delete their object once more, when their upload URL has died; a
	// later purge takes them.
	Waiting int `json:"waiting"`
}

// errKeep is a purge check's refusal of a record that changed since it
// was listed.
var errKeep = errors.New("not to be purged")

// errStillDue is a purge check's refusal of a record the sweeper still
// needs.
var errStillDue = errors.New("still due for the sweeper")

// servePurge deletes the ended records matching the query, never a
// pending one and never an object: a confirmed upload's object is the
// application's, and the others' are gone already. older_than is required,
// so that no purge deletes everything by accident; older_than=0s does.
func (adminRecords) servePurge(w http.ResponseWriter, r *http.Request) error {
	if err := allowMethods(w, r, http.MethodPost); err != nil {
		return err
	}
	q, err := recordsQuery(r)
	if err != nil {
		return err
	}
	if r.URL.Query().Get("older_than") == "" {
		return adminBadRequest("older_than: required (e.g. 30d; 0s purges every ended record)")
	}
	if q.Status == storage.StatusPending {
		return adminBadRequest("status: pending records are never purged; abort them first")
	}
	before := q.Before
	// Checked again in the deleting transaction: the record may have
	// changed since it was listed (a pending one cannot become pending
	// again, but the bound and the status must hold for what is deleted).
	check := func(cur *storage.Record) error {
		switch {
		case !cur.Terminal() || !cur.CreatedAt.Before(before) ||
			q.Status != "" && cur.Status != q.Status || q.Route != "" && cur.Internal.Route != q.Route ||
			q.Subject != "" && cur.Internal.Subject != q.Subject:
			return errKeep
		case cur.Internal.Recheck && cur.Status != storage.StatusConfirmed:
			// An upload URL may still write the object; the sweeper
			// deletes it once the URL died, and needs the record for it.
			return errStillDue
		}
		return nil
	}
	q.Limit = recordsBatch
	var n purgeCount
	for _, l := range runningLedgers() {
		q.After = ""
		for {
			recs, next, err := l.ledger.List(r.Context(), q)
			if err != nil {
				return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("listing the records of %s (%d purged so far): %v", l.name, n.Purged, err)}
			}
			for _, rec := range recs {
				if !rec.Terminal() {
					continue
				}
				err := l.ledger.Delete(r.Context(), rec.ID, check)
				switch {
				case err == nil:
					n.Purged++
				case errors.Is(err, errStillDue):
					n.Waiting++
				case errors.Is(err, errKeep), errors.Is(err, storage.ErrNotFound):
					// Changed or deleted (retention) since it was listed.
				default:
					return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("deleting %s from %s (%d purged so far): %v", rec.ID, l.name, n.Purged, err)}
				}
			}
			if next == "" {
				break
			}
			q.After = next
		}
	}
	writeJSON(w, http.StatusOK, n)
	return nil
}

// Interface guards
var _ caddy.AdminRouter = adminRecords{}

const usagePath = "/upload/usage"

// adminUsage is a subject's usage of a route, as GET /usage shows it to
// the subject.
type adminUsage struct {
	Route   string `json:"route"`
	Subject string `json:"subject"`
	Source  string `json:"source"`
	usageResponse
}

// serveUsage answers GET /upload/usage?route=&subject=[&source=]: the
// subject's usage of the running route against its limits. source
// defaults to the route's own identity source.
func (adminRecords) serveUsage(w http.ResponseWriter, r *http.Request) error {
	if err := allowMethods(w, r, http.MethodGet); err != nil {
		return err
	}
	q := r.URL.Query()
	route, subject := q.Get("route"), q.Get("subject")
	if route == "" || subject == "" {
		return adminBadRequest("route and subject are required")
	}
	for _, h := range runningHandlers() {
		if h.Name != route {
			continue
		}
		if h.quotas == nil {
			return caddy.APIError{HTTPStatus: http.StatusConflict, Err: fmt.Errorf("route %q keeps no usage: its ledger counts none", route)}
		}
		source := h.auth.source()
		if q.Has("source") {
			source = q.Get("source")
		}
		u, err := h.usageOf(r.Context(), storage.QuotaKey{Route: route, Source: source, Subject: subject})
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: fmt.Errorf("reading the usage: %v", err)}
		}
		return json.NewEncoder(w).Encode(adminUsage{Route: route, Subject: subject, Source: source, usageResponse: u})
	}
	return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no upload route %q is running", route)}
}
