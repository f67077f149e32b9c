package caddyupload

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

// adminRec is a record as the admin API shows it.
type adminRec struct {
	Ledger      string            `json:"ledger"`
	ID          string            `json:"id"`
	Key         string            `json:"key"`
	Status      string            `json:"status"`
	Filename    string            `json:"filename"`
	Size        int64             `json:"size"`
	Metadata    map[string]string `json:"metadata"`
	CreatedAt   time.Time         `json:"created_at"`
	ConfirmedAt *time.Time        `json:"confirmed_at"`
	Route       string            `json:"route"`
	Subject     string            `json:"subject"`
	Source      string            `json:"source"`
	Store       string            `json:"store"`
	Kind        string            `json:"kind"`
	ExpiresAt   *time.Time        `json:"expires_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
	Reason      string            `json:"reason"`
	ETag        string            `json:"etag"`
	Recheck     bool              `json:"recheck"`
}

// recordsAdmin calls the records routes of a site's admin endpoint.
type recordsAdmin struct {
	t    *testing.T
	addr string // 127.0.0.1:PORT
	base string // http://addr
}

// withAdmin turns the admin endpoint of a test site's config on at a free
// port.
func withAdmin(t *testing.T, cfg string) (string, recordsAdmin) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", realservers.FreePort(t))
	out := strings.Replace(cfg, "admin off", "admin "+addr, 1)
	if out == cfg {
		t.Fatal("the site's global options no longer turn the admin endpoint off")
	}
	return out, recordsAdmin{t: t, addr: addr, base: "http://" + addr}
}

// call sends one request and decodes a 200 answer into out.
func (a recordsAdmin) call(method, path string, out any) response {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, nil)
	if err != nil {
		a.t.Fatal(err)
	}
	resp := do(a.t, noRedirect, req)
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(resp.body, out); err != nil {
			a.t.Fatalf("%s %s: %s: %v", method, path, resp.body, err)
		}
	}
	return resp
}

// expect sends one request and fails unless it answers status; a 4xx or
// 5xx must carry Caddy's {"error": "..."}.
func (a recordsAdmin) expect(method, path string, status int, out any) response {
	a.t.Helper()
	resp := a.call(method, path, out)
	if resp.StatusCode != status {
		a.t.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, status, resp.body)
	}
	if status >= 400 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(resp.body, &e) != nil || e.Error == "" {
			a.t.Errorf("%s %s: error body %s", method, path, resp.body)
		}
	}
	return resp
}

// list follows every page of a listing with query q and page size limit.
func (a recordsAdmin) list(q string, limit int) []adminRec {
	a.t.Helper()
	var all []adminRec
	after := ""
	for pages := 0; ; pages++ {
		if pages > 100 {
			a.t.Fatal("the listing does not end")
		}
		path := fmt.Sprintf("/upload/records?limit=%d&%s", limit, q)
		if after != "" {
			path += "&after=" + url.QueryEscape(after)
		}
		var page struct {
			Records []adminRec `json:"records"`
			Next    string     `json:"next"`
		}
		a.expect("GET", path, http.StatusOK, &page)
		if page.Records == nil || len(page.Records) > limit {
			a.t.Fatalf("%s: %d records on a page of %d", path, len(page.Records), limit)
		}
		all = append(all, page.Records...)
		if page.Next == "" {
			return all
		}
		after = page.Next
	}
}

func ids(recs []adminRec) []string {
	out := make([]string, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.ID)
	}
	return out
}

// sameSet reports whether got holds every id of want exactly once and
// nothing else.
func sameSet(got, want []string) bool {
	g, w := slices.Clone(got), slices.Clone(want)
	sort.Strings(g)
	sort.Strings(w)
	return slices.Equal(g, w)
}

// createOn creates an upload of size bytes on route as user.
func (s *testSite) createOn(route, user, name string, size int, typ string) created {
	s.t.Helper()
	var c created
	r := s.send(user, "POST", "/"+route+"/", fmt.Sprintf(`{"filename":%q,"size":%d,"type":%q}`, name, size, typ), nil)
	if r.StatusCode != http.StatusCreated || json.Unmarshal(r.body, &c) != nil {
		s.t.Fatalf("create %s on %s: %d %s", name, route, r.StatusCode, r.body)
	}
	return c
}

// confirmOn uploads body on route as user and confirms it.
func (s *testSite) confirmOn(route, user string, body []byte) created {
	s.t.Helper()
	c := s.createOn(route, user, "c.txt", len(body), "text/plain")
	if st := s.put(c, body, nil); st != http.StatusOK {
		s.t.Fatalf("PUT: %d", st)
	}
	if r := s.send(user, "POST", "/"+route+"/"+c.ID+"/complete", "", nil); r.StatusCode != http.StatusOK {
		s.t.Fatalf("complete: %d %s", r.StatusCode, r.body)
	}
	return c
}

// twoRoutes loads a site with routes docs and pics on one ledger (the
// site's bolt file, or ledger when set), with the admin endpoint on.
func twoRoutes(t *testing.T, s *testSite, ledger, policy string) recordsAdmin {
	t.Helper()
	cfg, admin := withAdmin(t, s.routesCaddyfile(map[string]string{
		"docs": "name docs\n types text/plain image/png\n" + policy,
		"pics": "name pics\n types text/plain image/png\n" + policy,
	}))
	if ledger != "" {
		bolt := "ledger " + ledgerPath(s) + "\n"
		if strings.Count(cfg, bolt) != 2 {
			t.Fatal("the routes no longer name the bolt ledger")
		}
		cfg = strings.ReplaceAll(cfg, bolt, ledger+"\n")
	}
	s.load(cfg)
	s.waitServingOn("/docs/client.js")
	return admin
}

// waitServingOn waits until path answers.
func (s *testSite) waitServingOn(path string) {
	s.t.Helper()
	eventually(s.t, "the site serving", func() bool {
		resp, err := noRedirect.Get(s.base + path)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
}

// eachLedger runs f with the bolt ledger ("") and, with real servers,
// with a PostgreSQL ledger (its Caddyfile lines), and the name the admin
// API gives the ledger ("" for any but the bolt file).
func eachLedger(t *testing.T, f func(t *testing.T, ledger string, name func(*testSite) string)) {
	t.Run("bolt", func(t *testing.T) { f(t, "", ledgerPath) })
	if !testing.Short() {
		t.Run("postgres", func(t *testing.T) {
			t.Setenv("CU_TEST_PG_DSN", realservers.Postgres(t))
			f(t, "ledger postgres {\n dsn {env.CU_TEST_PG_DSN}\n }", func(*testSite) string { return "" })
		})
	}
}

// The listing pages through every record of a ledger shared by two
// routes exactly once, newest first, and its filters select exactly the
// records they name; a record shows the module's bookkeeping but no
// presigned URL; bad input answers 400.
func TestAdminRecordsListAndShow(t *testing.T) {
	eachLedger(t, testAdminRecordsListAndShow)
}

func testAdminRecordsListAndShow(t *testing.T, ledger string, ledgerName func(*testSite) string) {
	s := newSite(t, oneServer(t))
	admin := twoRoutes(t, s, ledger, "")

	docsAlice := []created{s.createOn("docs", "alice", "a1.txt", 5, "text/plain"), s.createOn("docs", "alice", "a2.txt", 5, "text/plain")}
	confirmed := s.confirmOn("docs", "alice", []byte("hello"))
	docsBob := s.createOn("docs", "bob", "b1.txt", 5, "text/plain")
	picsAlice := []created{s.createOn("pics", "alice", "p1.txt", 5, "text/plain"), s.createOn("pics", "alice", "p2.txt", 5, "text/plain")}
	picsBob := s.createOn("pics", "bob", "p3.txt", 5, "text/plain")
	var all []string
	for _, c := range append(append(docsAlice, confirmed, docsBob), append(picsAlice, picsBob)...) {
		all = append(all, c.ID)
	}

	for _, limit := range []int{1, 2, 3, 1000} {
		got := admin.list("", limit)
		if !sameSet(ids(got), all) || len(got) != len(all) {
			t.Fatalf("limit %d: listed %v, want each of %v once", limit, ids(got), all)
		}
		if !slices.IsSortedFunc(ids(got), func(a, b string) int { return strings.Compare(b, a) }) {
			t.Errorf("limit %d: not newest first: %v", limit, ids(got))
		}
	}

	for q, want := range map[string][]string{
		"route=docs":                     {docsAlice[0].ID, docsAlice[1].ID, confirmed.ID, docsBob.ID},
		"route=pics&subject=bob":         {picsBob.ID},
		"subject=alice&status=pending":   {docsAlice[0].ID, docsAlice[1].ID, picsAlice[0].ID, picsAlice[1].ID},
		"status=confirmed":               {confirmed.ID},
		"route=nosuchroute":              {},
		"older_than=1h":                  {},
		"older_than=0s&status=confirmed": {confirmed.ID},
	} {
		if got := admin.list(q, 2); !sameSet(ids(got), want) {
			t.Errorf("%s: listed %v, want %v", q, ids(got), want)
		}
	}

	// A record as an operator sees it.
	var rec adminRec
	resp := admin.expect("GET", "/upload/records/"+confirmed.ID, http.StatusOK, &rec)
	if rec.ID != confirmed.ID || rec.Key != confirmed.Key || rec.Status != "confirmed" || rec.Route != "docs" || rec.Subject != "alice" ||
		rec.Source == "" || rec.Store == "" || rec.Kind != "PUT" || rec.ETag == "" || rec.ConfirmedAt == nil ||
		rec.Ledger == "" || ledgerName(s) != "" && rec.Ledger != ledgerName(s) || ledgerName(s) == "" && rec.Ledger == ledgerPath(s) || rec.ExpiresAt != nil || rec.Recheck || rec.UpdatedAt.IsZero() {
		t.Errorf("confirmed record %s", resp.body)
	}
	var pend adminRec
	resp = admin.expect("GET", "/upload/records/"+picsBob.ID, http.StatusOK, &pend)
	if pend.Status != "pending" || pend.Route != "pics" || pend.Subject != "bob" || pend.ExpiresAt == nil || !pend.ExpiresAt.After(time.Now()) {
		t.Errorf("pending record %s", resp.body)
	}
	listing := admin.call("GET", "/upload/records?limit=1000", nil)
	for _, secret := range []string{"X-Amz-", "upload_id", picsBob.URL, confirmed.URL} {
		if strings.Contains(string(listing.body)+string(resp.body), secret) {
			t.Errorf("the admin API shows %q", secret)
		}
	}

	admin.expect("GET", "/upload/records/"+strings.Repeat("a", 42), http.StatusNotFound, nil)
	admin.expect("GET", "/upload/records/"+confirmed.ID+"/parts", http.StatusNotFound, nil)
	if r := admin.expect("POST", "/upload/records/"+confirmed.ID, http.StatusMethodNotAllowed, nil); r.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("Allow %q", r.Header.Get("Allow"))
	}
	if r := admin.expect("DELETE", "/upload/records", http.StatusMethodNotAllowed, nil); r.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("Allow %q", r.Header.Get("Allow"))
	}
	for _, bad := range []string{"limit=0", "limit=1001", "limit=x", "status=gone", "older_than=-1h", "older_than=soon", "after=" + url.QueryEscape("not a cursor")} {
		admin.expect("GET", "/upload/records?"+bad, http.StatusBadRequest, nil)
	}
	// Control: the same listing without the bad parameter answers.
	admin.expect("GET", "/upload/records?limit=1000&status=pending&older_than=0s", http.StatusOK, nil)
}

// An operator's abort goes through the route's own abort: the record is
// closed first, then the object (or the multipart upload) is removed;
// another user's upload is untouched. A confirmed upload is taken down the
// same way. A record whose route no longer runs is not aborted.
func TestAdminRecordsAbort(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		s := newSite(t, srv)
		cfg, admin := withAdmin(t, s.caddyfile("name docs"))
		s.load(cfg)

		mine := s.create("alice", "mine.txt", 5, "text/plain")
		theirs := s.create("bob", "theirs.txt", 6, "text/plain")
		if s.put(mine, []byte("alice"), nil) != http.StatusOK || s.put(theirs, []byte("bobbob"), nil) != http.StatusOK {
			t.Fatal("PUT failed")
		}
		if !s.objectExists(mine.Key) || !s.objectExists(theirs.Key) {
			t.Fatal("the objects are not in storage")
		}

		var rec adminRec
		admin.expect("POST", "/upload/records/"+mine.ID+"/abort", http.StatusOK, &rec)
		if rec.ID != mine.ID || rec.Status != "aborted" || rec.Reason != abortedByOperator || !rec.Recheck {
			t.Errorf("aborted record %+v", rec)
		}
		if s.objectExists(mine.Key) {
			t.Error("the aborted upload's object is still in storage")
		}
		var own record
		if s.call("alice", "GET", "/"+mine.ID, nil, &own); own.Status != "aborted" {
			t.Errorf("the owner sees %q", own.Status)
		}
		expectError(t, s.call("alice", "POST", "/"+mine.ID+"/complete", nil, nil), http.StatusGone, "expired")

		// Control: bob's upload is untouched and completes.
		if !s.objectExists(theirs.Key) {
			t.Fatal("another user's object was removed")
		}
		var done record
		if resp := s.call("bob", "POST", "/"+theirs.ID+"/complete", nil, &done); resp.StatusCode != http.StatusOK || done.Status != "confirmed" {
			t.Fatalf("bob's complete: %d %+v", resp.StatusCode, done)
		}
		// A takedown of a confirmed upload.
		admin.expect("POST", "/upload/records/"+theirs.ID+"/abort", http.StatusOK, &rec)
		if rec.Status != "aborted" || s.objectExists(theirs.Key) {
			t.Errorf("takedown: status %q, object there: %v", rec.Status, s.objectExists(theirs.Key))
		}
		// Aborting again changes nothing and answers the record.
		admin.expect("POST", "/upload/records/"+mine.ID+"/abort", http.StatusOK, &rec)
		if rec.Status != "aborted" {
			t.Errorf("second abort: %q", rec.Status)
		}

		// A multipart upload is aborted in storage.
		key, uploadID := s.uppyCreate()
		s.uppyParts(key, uploadID, 10)
		mp, err := s.recordByKey(admin, key)
		if err != nil {
			t.Fatal(err)
		}
		if !s.multipartExists(key, "") {
			t.Fatal("the multipart upload is not in storage")
		}
		admin.expect("POST", "/upload/records/"+mp+"/abort", http.StatusOK, &rec)
		if rec.Status != "aborted" || rec.Kind != "MULTIPART" || s.multipartExists(key, "") {
			t.Errorf("multipart abort: %+v, upload there: %v", rec, s.multipartExists(key, ""))
		}

		admin.expect("POST", "/upload/records/"+strings.Repeat("a", 42)+"/abort", http.StatusNotFound, nil)
		if r := admin.expect("GET", "/upload/records/"+mine.ID+"/abort", http.StatusMethodNotAllowed, nil); r.Header.Get("Allow") != "POST" {
			t.Errorf("Allow %q", r.Header.Get("Allow"))
		}

		// Once its route is renamed, no route here aborts a record; it is
		// still listed.
		left := s.create("alice", "left.txt", 4, "text/plain")
		s.load(strings.Replace(s.caddyfile("name renamed"), "admin off", "admin "+admin.addr, 1))
		admin.expect("POST", "/upload/records/"+left.ID+"/abort", http.StatusConflict, nil)
		admin.expect("GET", "/upload/records/"+left.ID, http.StatusOK, &rec)
		if rec.Status != "pending" {
			t.Errorf("the record of a route not running is %q", rec.Status)
		}
	})
}

// recordByKey finds the record that issued key through the listing.
func (s *testSite) recordByKey(admin recordsAdmin, key string) (string, error) {
	for _, r := range admin.list("", 1000) {
		if r.Key == key {
			return r.ID, nil
		}
	}
	return "", fmt.Errorf("no record has key %s", key)
}

// A subject-wide abort aborts every pending upload of the subject, on one
// route or all, however many pages it takes, and nothing else.
func TestAdminRecordsAbortSubject(t *testing.T) {
	old := recordsBatch
	recordsBatch = 2 // several pages
	t.Cleanup(func() { recordsBatch = old })
	s := newSite(t, oneServer(t))
	admin := twoRoutes(t, s, "", "")

	var docs []created
	for i := range 3 {
		c := s.createOn("docs", "alice", fmt.Sprintf("d%d.txt", i), 4, "text/plain")
		if st := s.put(c, []byte("data"), nil); st != http.StatusOK {
			t.Fatalf("PUT: %d", st)
		}
		docs = append(docs, c)
	}
	pics := s.createOn("pics", "alice", "p.txt", 4, "text/plain")
	confirmed := s.confirmOn("docs", "alice", []byte("kept"))
	bobs := []created{s.createOn("docs", "bob", "b1.txt", 4, "text/plain"), s.createOn("docs", "bob", "b2.txt", 4, "text/plain")}
	if st := s.put(bobs[0], []byte("bobs"), nil); st != http.StatusOK {
		t.Fatalf("PUT: %d", st)
	}

	admin.expect("POST", "/upload/records/abort?route=docs", http.StatusBadRequest, nil)
	admin.expect("POST", "/upload/records/abort?subject=alice&status=confirmed", http.StatusBadRequest, nil)
	admin.expect("GET", "/upload/records/abort?subject=alice", http.StatusMethodNotAllowed, nil)
	if got := admin.list("subject=alice&status=pending", 1000); len(got) != 4 {
		t.Fatalf("the 400s aborted something: %d pending", len(got))
	}

	var n abortCount
	admin.expect("POST", "/upload/records/abort?subject=alice&route=docs", http.StatusOK, &n)
	if n.Aborted != 3 || n.Skipped != 0 {
		t.Errorf("aborted %+v, want 3", n)
	}
	for _, c := range docs {
		if s.objectExists(c.Key) {
			t.Errorf("%s still in storage", c.Key)
		}
	}
	if got := ids(admin.list("status=aborted", 1000)); !sameSet(got, []string{docs[0].ID, docs[1].ID, docs[2].ID}) {
		t.Errorf("aborted: %v", got)
	}
	// Controls: alice's upload on pics, her confirmed one and bob's stay.
	if got := ids(admin.list("status=pending", 1000)); !sameSet(got, []string{pics.ID, bobs[0].ID, bobs[1].ID}) {
		t.Errorf("pending: %v", got)
	}
	if got := ids(admin.list("status=confirmed", 1000)); !sameSet(got, []string{confirmed.ID}) || !s.objectExists(confirmed.Key) || !s.objectExists(bobs[0].Key) {
		t.Errorf("confirmed: %v; objects there: %v %v", got, s.objectExists(confirmed.Key), s.objectExists(bobs[0].Key))
	}

	admin.expect("POST", "/upload/records/abort?subject=alice", http.StatusOK, &n)
	if n.Aborted != 1 {
		t.Errorf("every route: aborted %+v, want 1", n)
	}
	if got := ids(admin.list("status=pending", 1000)); !sameSet(got, []string{bobs[0].ID, bobs[1].ID}) {
		t.Errorf("pending after the second abort: %v", got)
	}
}

// A purge deletes exactly the ended records created before its bound,
// never a pending one and never an object; a record whose upload URL may
// still write its object waits for the sweeper's last deletion.
func TestAdminRecordsPurge(t *testing.T) {
	old := urlSkew
	urlSkew = 5 * time.Second // the margin for writes under way, short for the test
	t.Cleanup(func() { urlSkew = old })
	eachLedger(t, func(t *testing.T, ledger string, _ func(*testSite) string) { testAdminRecordsPurge(t, ledger) })
}

func testAdminRecordsPurge(t *testing.T, ledger string) {
	s := newSite(t, oneServer(t))
	admin := twoRoutes(t, s, ledger, "url_ttl 3s\n pending_ttl 1h\n sweep_interval 1s")

	// The old records: one of each status but expired, and a pending one.
	oldConfirmed := s.confirmOn("docs", "alice", []byte("kept"))
	oldAborted := s.createOn("docs", "alice", "a.txt", 4, "text/plain")
	if st := s.put(oldAborted, []byte("gone"), nil); st != http.StatusOK {
		t.Fatalf("PUT: %d", st)
	}
	if r := s.send("alice", "DELETE", "/docs/"+oldAborted.ID, "", nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("abort: %d", r.StatusCode)
	}
	// Until the sweeper has deleted its object once more, after its URL
	// died, a closed record is kept by a purge.
	var n purgeCount
	admin.expect("POST", "/upload/records/purge?older_than=0s&status=aborted", http.StatusOK, &n)
	if n.Purged != 0 || n.Waiting != 1 {
		t.Errorf("purge during the recheck: %+v, want 1 waiting", n)
	}
	mislabeled := []byte("plain text, nope")
	oldRejected := s.createOn("pics", "bob", "r.png", len(mislabeled), "image/png")
	if st := s.put(oldRejected, mislabeled, nil); st != http.StatusOK {
		t.Fatalf("PUT: %d", st)
	}
	rej := s.send("bob", "POST", "/pics/"+oldRejected.ID+"/complete", "", nil)
	var rec adminRec
	admin.expect("GET", "/upload/records/"+oldRejected.ID, http.StatusOK, &rec)
	if rec.Status != "rejected" {
		t.Fatalf("the mislabeled upload is %q (complete: %d %s)", rec.Status, rej.StatusCode, rej.body)
	}
	oldPending := s.createOn("pics", "alice", "p.txt", 4, "text/plain")
	eventually(t, "the sweeper's recheck", func() bool {
		for _, r := range admin.list("", 1000) {
			if r.Recheck {
				return false
			}
		}
		return true
	})

	time.Sleep(time.Second) // a gap between the old records and the new
	newConfirmed := s.confirmOn("pics", "alice", []byte("also"))
	newAborted := s.createOn("docs", "bob", "n.txt", 4, "text/plain")
	if r := s.send("bob", "DELETE", "/docs/"+newAborted.ID, "", nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("abort: %d", r.StatusCode)
	}
	newPending := s.createOn("docs", "bob", "q.txt", 4, "text/plain")

	// Bad requests purge nothing.
	admin.expect("POST", "/upload/records/purge", http.StatusBadRequest, nil)
	admin.expect("POST", "/upload/records/purge?older_than=0s&status=pending", http.StatusBadRequest, nil)
	admin.expect("POST", "/upload/records/purge?older_than=yesterday", http.StatusBadRequest, nil)
	admin.expect("GET", "/upload/records/purge?older_than=0s", http.StatusMethodNotAllowed, nil)
	admin.expect("POST", "/upload/records/purge?older_than=1h", http.StatusOK, &n)
	if n.Purged != 0 {
		t.Errorf("older_than=1h purged %d records of seconds ago", n.Purged)
	}
	all := []string{oldConfirmed.ID, oldAborted.ID, oldRejected.ID, oldPending.ID, newConfirmed.ID, newAborted.ID, newPending.ID}
	if got := ids(admin.list("", 1000)); !sameSet(got, all) {
		t.Fatalf("before the purge: %v, want %v", got, all)
	}

	// The bound: between the newest old record and the oldest new one.
	created := map[string]time.Time{}
	for _, r := range admin.list("", 1000) {
		created[r.ID] = r.CreatedAt
	}
	newestOld := slices.MaxFunc([]time.Time{created[oldConfirmed.ID], created[oldAborted.ID], created[oldRejected.ID], created[oldPending.ID]}, time.Time.Compare)
	mid := newestOld.Add(created[newConfirmed.ID].Sub(newestOld) / 2)
	admin.expect("POST", "/upload/records/purge?older_than="+url.QueryEscape(time.Since(mid).String()), http.StatusOK, &n)
	if n.Purged != 3 || n.Waiting != 0 {
		t.Errorf("purged %+v, want the 3 old ended records", n)
	}
	want := []string{oldPending.ID, newConfirmed.ID, newAborted.ID, newPending.ID}
	if got := ids(admin.list("", 1000)); !sameSet(got, want) {
		t.Errorf("after the purge: %v, want %v", got, want)
	}
	if !s.objectExists(oldConfirmed.Key) {
		t.Error("the purge deleted a confirmed upload's object")
	}

	// Every age: the new aborted record still waits for its recheck; the
	// pending ones stay whatever their age.
	admin.expect("POST", "/upload/records/purge?older_than=0s", http.StatusOK, &n)
	if n.Purged != 1 || n.Waiting != 1 {
		t.Errorf("second purge %+v, want 1 purged and 1 waiting", n)
	}
	want = []string{oldPending.ID, newAborted.ID, newPending.ID}
	if got := ids(admin.list("", 1000)); !sameSet(got, want) {
		t.Errorf("after the second purge: %v, want %v", got, want)
	}
	if !s.objectExists(newConfirmed.Key) {
		t.Error("the purge deleted a confirmed upload's object")
	}
}
