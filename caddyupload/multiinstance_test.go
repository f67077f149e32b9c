package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/template"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/caddyupload/caddyupload/internal/realservers"
	"github.com/caddyupload/caddyupload/internal/webhook"
)

// The webhook's secret, shared by the instances and the receiver.
const multiHookSecret = "multi-instance-webhook-secret-0123456789"

// multiTemplate is one of several instances behind a load balancer: the
// same route on one PostgreSQL ledger and one bucket, a webhook to the
// application. The lease times follow from sweep_interval (3 s) and the
// webhook's timeout (2*2 s + 5 s).
var multiTemplate = template.Must(template.New("multi").Parse(`{
	admin 127.0.0.1:{{.Admin}}
	persist_config off
}

http://127.0.0.1:{{.Port}} {
	handle_path /uploads/* {
		basic_auth {
			` + user + ` "{{.Hash}}"
		}
		upload {
			name files
			s3 {
				bucket {{.Bucket}}
				endpoint {{.Endpoint}}
				access_key_id {env.S3_KEY}
				secret_access_key {env.S3_SECRET}
			}
			ledger postgres {
				dsn {env.UPLOAD_PG_DSN}
			}
			types text/plain
			max_size 20MiB
			multipart_threshold 5MiB
			part_size 5MiB
			url_ttl 5s
			pending_ttl 10s
			sweep_interval 1s
			webhook {{.Hook}} {
				secret {env.HOOK_SECRET}
				timeout 2s
				max_backoff 1s
				concurrency 4
			}
		}
	}
	respond "app" 200
}
`))

// instance is one Caddy process of the several.
type instance struct {
	Name, Dir              string
	Admin, Port            int
	Bucket, Endpoint, Hook string

	proc *realservers.Process
	dead atomic.Bool
}

func (in *instance) Hash() string { return passwordHash }

func (in *instance) base() string { return "http://" + realservers.Addr(in.Port) + "/uploads" }

func (in *instance) start(t *testing.T, env []string) {
	t.Helper()
	var b bytes.Buffer
	if err := multiTemplate.Execute(&b, in); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(in.Dir, "Caddyfile")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	env = append(slices.Clip(env),
		"HOME="+in.Dir,
		"XDG_DATA_HOME="+filepath.Join(in.Dir, "xdg-data"),
		"XDG_CONFIG_HOME="+filepath.Join(in.Dir, "xdg-config"),
	)
	proc, err := realservers.Start("caddy-"+in.Name, binary, []string{"run", "--config", path}, env)
	if err != nil {
		t.Fatal(err)
	}
	in.proc = proc
	t.Cleanup(func() {
		proc.Stop(15 * time.Second)
		if t.Failed() {
			t.Logf("caddy %s output:\n%s", in.Name, proc.Output())
		}
	})
	err = proc.WaitReady(60*time.Second, func(context.Context) error {
		if !strings.Contains(proc.Output(), "serving initial configuration") {
			return errors.New("config not served yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// multiClient never follows redirects: downloads are checked hop by hop.
var multiClient = &http.Client{
	Timeout:       20 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// call is one API call as alice; it reports errors rather than failing,
// as the instance may be killed under it.
func (in *instance) call(method, path string, body any) (int, []byte, http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, in.base()+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.SetBasicAuth(user, password)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := multiClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header, err
}

// must is call for the test goroutine: a transport error fails the test.
func (in *instance) must(t *testing.T, method, path string, body any) (int, []byte, http.Header) {
	t.Helper()
	status, b, h, err := in.call(method, path, body)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, in.Name, err)
	}
	return status, b, h
}

// hookReceiver is the application: it verifies each delivery and records
// it by webhook-id, in the order they arrive.
type hookReceiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	arrivals []arrival
	bad      []string
}

type arrival struct {
	eventID, typ, record string
	at                   time.Time
}

func newHookReceiver(t *testing.T) *hookReceiver {
	r := &hookReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		var p struct {
			ID   string `json:"id"`
			Type string `json:"type"`
			Data struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		var id string
		if err == nil {
			id, err = webhook.VerifyStandard([]byte(multiHookSecret), req.Header, body, time.Now())
		}
		if err == nil {
			err = json.Unmarshal(body, &p)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil || id != p.ID || p.ID != p.Data.ID+":"+p.Type {
			r.bad = append(r.bad, fmt.Sprintf("%v: %s", err, body))
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.arrivals = append(r.arrivals, arrival{eventID: id, typ: p.Type, record: p.Data.ID, at: time.Now()})
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *hookReceiver) snapshot() ([]arrival, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.arrivals), slices.Clone(r.bad)
}

func (r *hookReceiver) got(eventID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.ContainsFunc(r.arrivals, func(a arrival) bool { return a.eventID == eventID })
}

// load is what the parallel clients were told: an acknowledged create,
// confirmation or abort is one the ledger must keep.
type load struct {
	mu        sync.Mutex
	created   map[string]created // id → upload
	content   map[string]string
	confirmed map[string]bool
	aborted   map[string]bool
	failures  []string
}

func (l *load) fail(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures = append(l.failures, fmt.Sprintf(format, args...))
}

func (l *load) confirmedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.confirmed)
}

// liveSet picks instances that have not been killed.
type liveSet []*instance

func (s liveSet) pick(rng *rand.Rand) *instance {
	var live []*instance
	for _, in := range s {
		if !in.dead.Load() {
			live = append(live, in)
		}
	}
	return live[rng.IntN(len(live))]
}

// upload runs one whole upload, each call on a random live instance and
// retried on another one when an instance fails, as a load balancer with
// retries would; every fourth confirmed upload is deleted again.
func (l *load) upload(insts liveSet, rng *rand.Rand, name string, abort bool) {
	content := name + " " + strings.Repeat("z", rng.IntN(300)) + "\n"
	var c created
	ok := false
	for attempt := 0; attempt < 3 && !ok; attempt++ {
		status, body, _, err := insts.pick(rng).call(http.MethodPost, "/", map[string]any{"filename": name + ".txt", "size": len(content), "type": "text/plain"})
		ok = err == nil && status == http.StatusCreated && json.Unmarshal(body, &c) == nil
	}
	if !ok {
		l.fail("%s: create", name)
		return
	}
	l.mu.Lock()
	l.created[c.ID], l.content[c.ID] = c, content
	l.mu.Unlock()

	for attempt := 0; ; attempt++ {
		req, _ := http.NewRequest(c.Method, c.URL, strings.NewReader(content))
		setSigned(req, c)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			// The URL creates its object once: 412 on a retry says the
			// first attempt got through.
			if resp.StatusCode == http.StatusOK || attempt > 0 && resp.StatusCode == http.StatusPreconditionFailed {
				break
			}
			err = errors.New(resp.Status)
		}
		if attempt == 1 {
			l.fail("%s: PUT: %v", name, err)
			return
		}
	}

	ok = false
	for attempt := 0; attempt < 3 && !ok; attempt++ {
		status, body, _, err := insts.pick(rng).call(http.MethodPost, "/"+c.ID+"/complete", map[string]any{})
		ok = err == nil && status == http.StatusOK && strings.Contains(string(body), `"status":"confirmed"`)
	}
	if !ok {
		l.fail("%s: complete", name)
		return
	}
	l.mu.Lock()
	l.confirmed[c.ID] = true
	l.mu.Unlock()

	if !abort {
		return
	}
	ok = false
	for attempt := 0; attempt < 3 && !ok; attempt++ {
		status, _, _, err := insts.pick(rng).call(http.MethodDelete, "/"+c.ID, nil)
		ok = err == nil && status == http.StatusNoContent
	}
	if !ok {
		l.fail("%s: delete", name)
		return
	}
	l.mu.Lock()
	l.aborted[c.ID] = true
	l.mu.Unlock()
}

// holderPID is the process id in a lease holder ("<host>/<pid>/<random>").
func holderPID(holder string) int {
	parts := strings.Split(holder, "/")
	if len(parts) < 3 {
		return 0
	}
	pid, _ := strconv.Atoi(parts[len(parts)-2])
	return pid
}

// TestMultiInstance runs three Caddy processes on one PostgreSQL ledger and
// one S3 server (versitygw), as behind a load balancer: one upload's calls
// spread over all three; parallel clients on random instances while the
// instances holding the sweeper and the webhook leases are killed with
// SIGKILL; then PostgreSQL itself is killed and restarted under the
// survivors.
func TestMultiInstance(t *testing.T) {
	begin := time.Now()
	pg := realservers.StartPostgres(t)
	dsn := pg.NewDatabase(t)
	gw := realservers.StartVersityGW(t)
	bucket := gw.NewBucket(t)
	s3c := gw.Client()
	hooks := newHookReceiver(t)
	ctx := t.Context()
	db, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	env := []string{"UPLOAD_PG_DSN=" + dsn, "S3_KEY=" + gw.AccessKey, "S3_SECRET=" + gw.SecretKey, "HOOK_SECRET=" + multiHookSecret}

	insts := liveSet{}
	for _, name := range []string{"A", "B", "C"} {
		insts = append(insts, &instance{
			Name: name, Dir: t.TempDir(),
			Admin: realservers.FreePort(t), Port: realservers.FreePort(t),
			Bucket: bucket, Endpoint: gw.Endpoint, Hook: hooks.srv.URL + "/hooks",
		})
	}
	var wg sync.WaitGroup
	for _, in := range insts {
		wg.Go(func() { in.start(t, env) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	a, b, c := insts[0], insts[1], insts[2]
	byPID := func(pid int) *instance {
		for _, in := range insts {
			if in.proc.Pid() == pid {
				return in
			}
		}
		return nil
	}
	// leases lists the unexpired leases by name: the instance holding each.
	leases := func() map[string]*instance {
		rows, err := db.Query(ctx, `SELECT name, holder FROM caddyupload.leases WHERE expires_at > now()`)
		if err != nil {
			return nil
		}
		defer rows.Close()
		out := map[string]*instance{}
		for rows.Next() {
			var name, holder string
			if rows.Scan(&name, &holder) == nil {
				out[name] = byPID(holderPID(holder))
			}
		}
		return out
	}
	sweepLease := func(m map[string]*instance) *instance {
		for name, in := range m {
			if strings.HasPrefix(name, "sweep:") && strings.HasSuffix(name, ":files") {
				return in
			}
		}
		return nil
	}
	head := func(key string) (int64, bool) {
		out, err := s3c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
		if err != nil {
			return 0, false
		}
		return *out.ContentLength, true
	}

	// One multipart upload across the three: create on A, sign the parts
	// on B, complete on C, download through A.
	big := bytes.Repeat([]byte("one upload, three instances\n"), (6<<20+123)/28+1)[:6<<20+123]
	status, body, _ := a.must(t, http.MethodPost, "/", map[string]any{"filename": "big.txt", "size": len(big), "type": "text/plain"})
	var mp struct {
		created
		Multipart struct {
			PartSize  int64 `json:"part_size"`
			PartCount int   `json:"part_count"`
		} `json:"multipart"`
	}
	if status != http.StatusCreated || json.Unmarshal(body, &mp) != nil || mp.Multipart.PartCount != 2 || mp.URL != "" {
		t.Fatalf("multipart create on A: %d %s", status, body)
	}
	status, body, _ = b.must(t, http.MethodPost, "/"+mp.ID+"/parts", map[string]any{"numbers": []int{1, 2}})
	var signed struct {
		Parts []struct {
			Number  int               `json:"number"`
			URL     string            `json:"url"`
			Headers map[string]string `json:"headers"`
		} `json:"parts"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &signed) != nil || len(signed.Parts) != 2 {
		t.Fatalf("signing parts on B: %d %s", status, body)
	}
	var etags []map[string]any
	for i, p := range signed.Parts {
		lo := int64(i) * mp.Multipart.PartSize
		hi := min(lo+mp.Multipart.PartSize, int64(len(big)))
		req, _ := http.NewRequest(http.MethodPut, p.URL, bytes.NewReader(big[lo:hi]))
		setSigned(req, created{Headers: p.Headers})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") == "" {
			t.Fatalf("part %d: %s", p.Number, resp.Status)
		}
		etags = append(etags, map[string]any{"number": p.Number, "etag": resp.Header.Get("ETag")})
	}
	status, body, _ = c.must(t, http.MethodPost, "/"+mp.ID+"/complete", map[string]any{"parts": etags})
	if status != http.StatusOK || !strings.Contains(string(body), `"status":"confirmed"`) {
		t.Fatalf("complete on C: %d %s", status, body)
	}
	if got := downloadVia(t, a, mp.ID); !bytes.Equal(got, big) {
		t.Fatalf("download through A: %d bytes, want the %d bytes sent", len(got), len(big))
	}

	// Parallel clients on random instances.
	ld := &load{created: map[string]created{}, content: map[string]string{}, confirmed: map[string]bool{}, aborted: map[string]bool{}}
	var stop atomic.Bool
	loadStart := time.Now()
	for w := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for i := 0; !stop.Load(); i++ {
				ld.upload(insts, rng, fmt.Sprintf("w%d-%d", w, i), i%4 == 3)
			}
		})
	}
	stopLoad := func() {
		stop.Store(true)
		wg.Wait()
	}
	defer stopLoad()

	var held map[string]*instance
	waitFor(t, "uploads under way and both leases held", func() bool {
		held = leases()
		return ld.confirmedCount() >= 60 && held["webhook:files"] != nil && sweepLease(held) != nil
	})
	sweeper, deliverer := sweepLease(held), held["webhook:files"]
	t.Logf("before the kill: %s sweeps, %s delivers webhooks", sweeper.Name, deliverer.Name)

	// An upload abandoned before the kill: its object is in the bucket,
	// it is never completed.
	var abandoned created
	{
		status, body, _ := b.must(t, http.MethodPost, "/", map[string]any{"filename": "abandoned.txt", "size": 9, "type": "text/plain"})
		if status != http.StatusCreated || json.Unmarshal(body, &abandoned) != nil {
			t.Fatalf("create: %d %s", status, body)
		}
		if st, msg := put(t, abandoned, []byte("abandoned"), ""); st != http.StatusOK {
			t.Fatalf("PUT: %d %s", st, msg)
		}
		status, body, _ = c.must(t, http.MethodGet, "/"+abandoned.ID, nil)
		if _, ok := head(abandoned.Key); status != http.StatusOK || !strings.Contains(string(body), `"status":"pending"`) || !ok {
			t.Fatalf("the abandoned upload before the kill: %d %s, object there: %v", status, body, ok)
		}
	}

	// kill -9 of the sweeping and the delivering instance.
	victims := []*instance{sweeper}
	if deliverer != sweeper {
		victims = append(victims, deliverer)
	}
	killed := time.Now()
	for _, v := range victims {
		v.dead.Store(true)
		v.proc.Kill()
	}
	var survivors liveSet
	for _, in := range insts {
		if !in.dead.Load() {
			survivors = append(survivors, in)
		}
	}
	var sweepTakeover, hookTakeover time.Duration
	waitFor(t, "the leases taken over by survivors", func() bool {
		m := leases()
		if in := sweepLease(m); sweepTakeover == 0 && in != nil && !in.dead.Load() {
			sweepTakeover = time.Since(killed)
		}
		if in := m["webhook:files"]; hookTakeover == 0 && in != nil && !in.dead.Load() {
			hookTakeover = time.Since(killed)
		}
		return sweepTakeover > 0 && hookTakeover > 0
	})
	t.Logf("killed %d instance(s); sweeping taken over after %s, webhook delivery after %s", len(victims), sweepTakeover.Round(100*time.Millisecond), hookTakeover.Round(100*time.Millisecond))

	// Sweeping resumed: the abandoned upload is expired and its object
	// deleted by a survivor.
	waitFor(t, "the abandoned upload expired by a survivor", func() bool {
		status, body, _, err := survivors[0].call(http.MethodGet, "/"+abandoned.ID, nil)
		_, there := head(abandoned.Key)
		return err == nil && status == http.StatusOK && strings.Contains(string(body), `"status":"expired"`) && !there
	})

	afterKill := ld.confirmedCount()
	waitFor(t, "uploads confirmed by the survivors", func() bool { return ld.confirmedCount() >= afterKill+40 })
	stopLoad()
	loadTime := time.Since(loadStart)

	// Every acknowledged record is there, read through a survivor, with the
	// status the client was told; a confirmed object is in the bucket with
	// its bytes, a deleted one is gone.
	ld.mu.Lock()
	defer ld.mu.Unlock()
	t.Logf("%d uploads created, %d confirmed, %d deleted again in %s; %d client calls failed (the killed instances')",
		len(ld.created), len(ld.confirmed), len(ld.aborted), loadTime.Round(time.Second), len(ld.failures))
	if len(ld.failures) > 40 {
		t.Fatalf("%d uploads failed, e.g. %v", len(ld.failures), ld.failures[:5])
	}
	ld.confirmed[mp.ID], ld.created[mp.ID], ld.content[mp.ID] = true, mp.created, string(big)
	i := 0
	for id, up := range ld.created {
		in := survivors[i%len(survivors)]
		i++
		status, body, _ := in.must(t, http.MethodGet, "/"+id, nil)
		var rec record
		if status != http.StatusOK || json.Unmarshal(body, &rec) != nil {
			t.Fatalf("acknowledged upload %s through %s: %d %s", id, in.Name, status, body)
		}
		size, there := head(up.Key)
		switch {
		case ld.aborted[id]:
			if rec.Status != "aborted" || there {
				t.Fatalf("deleted upload %s: %s, object there: %v", id, rec.Status, there)
			}
		case ld.confirmed[id]:
			// No live object deleted, by the sweepers or anyone.
			if rec.Status != "confirmed" || !there || size != int64(len(ld.content[id])) {
				t.Fatalf("confirmed upload %s: %s, object there: %v (%d bytes)", id, rec.Status, there, size)
			}
		}
	}
	sampled := 0
	for id := range ld.confirmed {
		if ld.aborted[id] || sampled == 5 {
			continue
		}
		sampled++
		if got := string(downloadVia(t, survivors[sampled%len(survivors)], id)); got != ld.content[id] {
			t.Fatalf("upload %s downloaded %d bytes that differ from the %d sent", id, len(got), len(ld.content[id]))
		}
	}

	// Every event delivered once after de-duplication by webhook-id, and
	// each upload's in order. The outbox is drained once every upload has
	// ended (the ones whose client gave up expire).
	waitFor(t, "every upload ended and the outbox drained", func() bool {
		var pending, events int
		err := db.QueryRow(ctx, `SELECT (SELECT count(*) FROM caddyupload.records WHERE status = 'pending'),
			(SELECT count(*) FROM caddyupload.events)`).Scan(&pending, &events)
		return err == nil && pending == 0 && events == 0
	})
	want := map[string]bool{}
	rows, err := db.Query(ctx, `SELECT id, status FROM caddyupload.records`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, st string
		if err := rows.Scan(&id, &st); err != nil {
			t.Fatal(err)
		}
		switch st {
		case "confirmed":
			want[id+":upload.confirmed"] = true
		case "aborted":
			// Only confirmed uploads were deleted.
			want[id+":upload.confirmed"], want[id+":upload.aborted"] = true, true
		case "expired":
			want[id+":upload.expired"] = true
		default:
			t.Fatalf("record %s ended %s", id, st)
		}
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	arrivals, bad := hooks.snapshot()
	if len(bad) > 0 {
		t.Fatalf("%d deliveries failed verification, e.g. %s", len(bad), bad[0])
	}
	first := map[string]int{} // event id → index of its first arrival
	for i, a := range arrivals {
		if _, seen := first[a.eventID]; !seen {
			first[a.eventID] = i
		}
	}
	for id := range want {
		if _, ok := first[id]; !ok {
			t.Errorf("event %s never delivered", id)
		}
	}
	for id := range first {
		if !want[id] {
			t.Errorf("event %s delivered, but its record did not change so", id)
		}
	}
	for id := range ld.aborted {
		if first[id+":upload.confirmed"] > first[id+":upload.aborted"] {
			t.Errorf("upload %s: upload.aborted delivered before upload.confirmed", id)
		}
	}
	// One instance delivers at a time, up to `concurrency` (4) events at
	// once: the only events that may come twice are those the killed
	// deliverer had sent but not yet recorded as delivered (their requests
	// may reach the receiver a moment after the kill).
	count := map[string]int{}
	for _, a := range arrivals {
		count[a.eventID]++
	}
	var dups []string
	for id, n := range count {
		if n > 1 {
			dups = append(dups, fmt.Sprintf("%s ×%d (first at kill%+.1fs)", id, n, arrivals[first[id]].at.Sub(killed).Seconds()))
			// Its first delivery is the killed instance's: before a
			// survivor took the lease over.
			if n > 2 || arrivals[first[id]].at.After(killed.Add(hookTakeover)) {
				t.Errorf("event %s delivered %d times, first %s after the kill: two instances delivered", id, n, arrivals[first[id]].at.Sub(killed))
			}
		}
	}
	if len(dups) > 4 {
		t.Errorf("%d events delivered more than once, more than were in flight: %v", len(dups), dups)
	}
	if t.Failed() {
		t.FailNow()
	}
	// The busiest second of delivery: the survivor draining what waited
	// during the takeover.
	peak := 0
	for i, j := 0, 0; j < len(arrivals); j++ {
		for arrivals[j].at.Sub(arrivals[i].at) > time.Second {
			i++
		}
		peak = max(peak, j-i+1)
	}
	t.Logf("%d events delivered, %d duplicates %v; busiest second: %d events", len(first), len(arrivals)-len(first), dups, peak)

	// PostgreSQL dies between requests: the API answers 503
	// storage_unavailable; restarted, the same processes carry on.
	for _, in := range survivors {
		if status, body, _ := in.must(t, http.MethodGet, "/"+mp.ID, nil); status != http.StatusOK {
			t.Fatalf("control before PostgreSQL's crash on %s: %d %s", in.Name, status, body)
		}
	}
	pg.Kill(t)
	for _, in := range survivors {
		for _, c := range []struct {
			method, path string
			body         any
		}{
			{http.MethodPost, "/", map[string]any{"filename": "down.txt", "size": 4, "type": "text/plain"}},
			{http.MethodGet, "/" + mp.ID, nil},
		} {
			status, body, h := in.must(t, c.method, c.path, c.body)
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if status != http.StatusServiceUnavailable || json.Unmarshal(body, &e) != nil || e.Error.Code != "storage_unavailable" ||
				e.Error.Message == "" || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
				t.Fatalf("%s %s on %s with PostgreSQL down: %d %s", c.method, c.path, in.Name, status, body)
			}
		}
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	pids := map[*instance]int{}
	for _, in := range survivors {
		pids[in] = in.proc.Pid()
		waitFor(t, in.Name+" answering again", func() bool {
			status, _, _, err := in.call(http.MethodGet, "/"+mp.ID, nil)
			return err == nil && status == http.StatusOK
		})
	}
	// A whole upload across the survivors after the restart, and its event.
	rng := rand.New(rand.NewPCG(1, 2))
	after := &load{created: map[string]created{}, content: map[string]string{}, confirmed: map[string]bool{}, aborted: map[string]bool{}}
	after.upload(survivors, rng, "after-restart", false)
	if len(after.confirmed) != 1 {
		t.Fatalf("an upload after PostgreSQL's restart: %v", after.failures)
	}
	for id := range after.confirmed {
		waitFor(t, "the event of an upload after the restart", func() bool { return hooks.got(id + ":upload.confirmed") })
	}
	waitFor(t, "both leases renewed after the restart", func() bool {
		m := leases()
		s, d := sweepLease(m), m["webhook:files"]
		return s != nil && !s.dead.Load() && d != nil && !d.dead.Load()
	})
	for in, pid := range pids {
		if in.proc.Exited() || in.proc.Pid() != pid {
			t.Fatalf("%s was restarted", in.Name)
		}
	}

	// No instance opened a bbolt file.
	for _, in := range insts {
		_ = filepath.WalkDir(in.Dir, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(path, ".db") {
				t.Errorf("%s has a ledger file %s", in.Name, path)
			}
			return nil
		})
	}
	t.Logf("wall time %s", time.Since(begin).Round(time.Second))
}

// multiLocation is the presigned GET a download through in redirects to.
func multiLocation(t *testing.T, in *instance, id string) string {
	t.Helper()
	status, _, h := in.must(t, http.MethodGet, "/"+id+"/download", nil)
	if status != http.StatusFound || h.Get("Location") == "" {
		t.Fatalf("download of %s on %s: %d", id, in.Name, status)
	}
	return h.Get("Location")
}

func downloadVia(t *testing.T, in *instance, id string) []byte {
	t.Helper()
	resp, err := multiClient.Get(multiLocation(t, in, id))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("presigned GET of %s: %s", id, resp.Status)
	}
	return b
}
