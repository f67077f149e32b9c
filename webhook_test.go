package caddyupload

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/caddyupload/caddyupload/internal/webhook"
)

const testWebhookSecret = "whsec-0123456789abcdef"

// hookReceiver is the application's webhook endpoint.
type hookReceiver struct {
	t    *testing.T
	srv  *httptest.Server
	down atomic.Bool // answer 500
	// failType answers 500 to the events of this type.
	failType atomic.Value
	mu       sync.Mutex
	byID     map[string][]hookDelivery
	// order is every attempt as "<event id> <status>", as they arrived.
	order  []string
	errors []string
}

type hookDelivery struct {
	status  int // what the receiver answered
	payload hookPayload
}

type hookPayload struct {
	ID        string         `json:"id"`
	Type      string         `json:"type"`
	CreatedAt time.Time      `json:"created_at"`
	Data      map[string]any `json:"data"`
}

func newHookReceiver(t *testing.T) *hookReceiver {
	r := &hookReceiver{t: t, byID: map[string][]hookDelivery{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, e := range r.errors {
			t.Error(e)
		}
	})
	return r
}

func (r *hookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	problem := func(format string, args ...any) {
		r.mu.Lock()
		r.errors = append(r.errors, fmt.Sprintf(format, args...))
		r.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
	}
	if err != nil {
		problem("reading a delivery: %v", err)
		return
	}
	ts, err := webhook.Verify([]byte(testWebhookSecret), req.Header.Get("X-Upload-Signature"), body, time.Now())
	if err != nil {
		problem("delivery %s: %v", req.Header.Get("Webhook-Id"), err)
		return
	}
	var p hookPayload
	if err := json.Unmarshal(body, &p); err != nil {
		problem("delivery body: %v", err)
		return
	}
	if id, err := webhook.VerifyStandard([]byte(testWebhookSecret), req.Header, body, time.Now()); err != nil || id != p.ID {
		problem("delivery %s: webhook-signature: %q, %v", p.ID, id, err)
		return
	}
	// The specification's own library, with the secret as raw bytes.
	wh, err := standardwebhooks.NewWebhookRaw([]byte(testWebhookSecret))
	if err == nil {
		err = wh.Verify(body, req.Header)
	}
	if err != nil {
		problem("delivery %s: the Standard Webhooks library: %v", p.ID, err)
		return
	}
	if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" ||
		req.Header.Get("Webhook-Id") != p.ID || req.Header.Get("Webhook-Timestamp") != strconv.FormatInt(ts, 10) {
		problem("delivery %s: method %s, headers %v", p.ID, req.Method, req.Header)
		return
	}
	status := http.StatusNoContent
	if r.down.Load() || r.failType.Load() == p.Type {
		status = http.StatusInternalServerError
	}
	r.mu.Lock()
	r.byID[p.ID] = append(r.byID[p.ID], hookDelivery{status: status, payload: p})
	r.order = append(r.order, fmt.Sprintf("%s %d", p.ID, status))
	r.mu.Unlock()
	w.WriteHeader(status)
}

// attempts counts the deliveries of event id, delivered those answered 2xx.
func (r *hookReceiver) attempts(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byID[id])
}

func (r *hookReceiver) delivered(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, d := range r.byID[id] {
		if d.status < 300 {
			n++
		}
	}
	return n
}

func (r *hookReceiver) deliveries(id string) []hookDelivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hookDelivery(nil), r.byID[id]...)
}

// waitDelivered waits until event id was accepted and returns its payload.
func (r *hookReceiver) waitDelivered(id string) hookPayload {
	r.t.Helper()
	eventually(r.t, "delivery of "+id, func() bool { return r.delivered(id) > 0 })
	for _, d := range r.deliveries(id) {
		if d.status < 300 {
			return d.payload
		}
	}
	panic("unreachable")
}

// hookPolicy is the upload policy of a route named docs with a webhook to
// url; backoff stays short so tests need not wait.
func hookPolicy(url, extra string) string {
	return fmt.Sprintf("name docs\n\t\t\twebhook %s {\n\t\t\t\tsecret {env.CU_TEST_WEBHOOK_SECRET}\n\t\t\t\tmax_backoff 1s\n\t\t\t\t%s\n\t\t\t}", url, extra)
}

func newHookSite(t *testing.T) (*testSite, *hookReceiver) {
	s := newSite(t, oneServer(t))
	t.Setenv("CU_TEST_WEBHOOK_SECRET", testWebhookSecret)
	return s, newHookReceiver(t)
}

// confirmUpload uploads a small file as user and returns its record id.
func confirmUpload(s *testSite, user string) string {
	s.t.Helper()
	body := []byte(strings.Repeat("a webhook note\n", 7)[:100])
	c := s.create(user, "notes.txt", int64(len(body)), "text/plain")
	if st := s.put(c, body, nil); st != http.StatusOK {
		s.t.Fatalf("PUT: %d", st)
	}
	var rec record
	if resp := s.call(user, "POST", "/"+c.ID+"/complete", nil, &rec); resp.StatusCode != http.StatusOK || rec.Status != "confirmed" {
		s.t.Fatalf("complete: %d %+v", resp.StatusCode, rec)
	}
	return c.ID
}

// abortAndWait aborts upload id and waits for its event: every earlier
// event of that upload has been acknowledged by then, since one upload's
// events go out in order.
func abortAndWait(s *testSite, r *hookReceiver, user, id string) hookPayload {
	s.t.Helper()
	if resp := s.call(user, "DELETE", "/"+id, nil, nil); resp.StatusCode != http.StatusNoContent {
		s.t.Fatalf("abort: %d", resp.StatusCode)
	}
	return r.waitDelivered(id + ":upload.aborted")
}

func TestWebhookConfirmed(t *testing.T) {
	s, rcv := newHookSite(t)
	s.load(s.caddyfile(hookPolicy(rcv.srv.URL+"/hooks/uploads", "")))

	id := confirmUpload(s, "alice")
	p := rcv.waitDelivered(id + ":upload.confirmed")
	d := p.Data
	if p.Type != "upload.confirmed" || p.CreatedAt.IsZero() || time.Since(p.CreatedAt) > time.Hour ||
		d["id"] != id || d["status"] != "confirmed" || d["subject"] != "alice" || d["filename"] != "notes.txt" ||
		d["type"] != "text/plain" || d["size"] != float64(100) || d["key"] == "" || d["confirmed_at"] == nil {
		t.Errorf("payload %+v", p)
	}
	for _, hidden := range []string{"internal", "store", "route", "upload_id", "notify", "expires_at", "Internal"} {
		if _, ok := d[hidden]; ok {
			t.Errorf("payload data shows %q: %v", hidden, d)
		}
	}

	abortAndWait(s, rcv, "alice", id)
	if n := rcv.attempts(id + ":upload.confirmed"); n != 1 {
		t.Errorf("upload.confirmed arrived %d times, want once", n)
	}
}

func TestWebhookRetriesAcrossReload(t *testing.T) {
	s, rcv := newHookSite(t)
	rcv.down.Store(true)
	policy := hookPolicy(rcv.srv.URL, "max_attempts 1000")
	s.load(s.caddyfile(policy))

	a := confirmUpload(s, "alice")
	evA := a + ":upload.confirmed"
	eventually(t, "two failed attempts", func() bool { return rcv.attempts(evA) >= 2 })

	// A changed config takes over the outbox of the same ledger.
	if err := loadCaddyfile(s.caddyfile(policy + "\n\t\t\tmax_size 2MiB")); err != nil {
		t.Fatal(err)
	}
	s.waitServing()
	b := confirmUpload(s, "bob")
	evB := b + ":upload.confirmed"
	eventually(t, "a failed attempt of the new config's event", func() bool { return rcv.attempts(evB) >= 1 })
	eventually(t, "a failed attempt after the reload", func() bool { return rcv.attempts(evA) >= 3 })

	rcv.down.Store(false)
	pa, pb := rcv.waitDelivered(evA), rcv.waitDelivered(evB)
	if pa.Data["subject"] != "alice" || pb.Data["subject"] != "bob" {
		t.Errorf("payloads %+v, %+v", pa, pb)
	}
	abortAndWait(s, rcv, "bob", b)

	for _, ev := range []string{evA, evB} {
		ds := rcv.deliveries(ev)
		if n := rcv.delivered(ev); n != 1 {
			t.Errorf("%s accepted %d times, want once", ev, n)
		}
		if ds[len(ds)-1].status >= 300 {
			t.Errorf("%s attempted again after it was accepted", ev)
		}
		// Every attempt carries the same event.
		for _, d := range ds {
			if !d.payload.CreatedAt.Equal(ds[0].payload.CreatedAt) || d.payload.Data["id"] != ds[0].payload.Data["id"] {
				t.Errorf("%s changed between attempts: %+v vs %+v", ev, d.payload, ds[0].payload)
			}
		}
	}
	if n := rcv.attempts(evA); n < 4 {
		t.Errorf("%s: %d attempts, want at least 3 failures and a success", evA, n)
	}
}

func TestWebhookRejectedAndAborted(t *testing.T) {
	s, rcv := newHookSite(t)
	s.load(s.caddyfile(hookPolicy(rcv.srv.URL, "")))

	// An object that lies about its type is rejected.
	rej := s.create("alice", "pic.png", 100, "image/png")
	s.putDirect(rej.Key, randomBytes(100), "text/html")
	if resp := s.call("alice", "POST", "/"+rej.ID+"/complete", nil, nil); resp.StatusCode < 400 {
		t.Fatalf("complete of a mislabeled object: %d", resp.StatusCode)
	}
	p := rcv.waitDelivered(rej.ID + ":upload.rejected")
	if p.Type != "upload.rejected" || p.Data["status"] != "rejected" || p.Data["id"] != rej.ID || p.Data["subject"] != "alice" {
		t.Errorf("rejected payload %+v", p)
	}

	pending := s.create("bob", "draft.txt", 10, "text/plain")
	p = abortAndWait(s, rcv, "bob", pending.ID)
	if p.Type != "upload.aborted" || p.Data["status"] != "aborted" || p.Data["subject"] != "bob" {
		t.Errorf("aborted payload %+v", p)
	}
}

func TestWebhookExpired(t *testing.T) {
	s, rcv := newHookSite(t)
	s.load(s.caddyfile(hookPolicy(rcv.srv.URL, "") + "\n\t\t\turl_ttl 1s\n\t\t\tpending_ttl 1s\n\t\t\tsweep_interval 1s"))

	c := s.create("alice", "never.txt", 10, "text/plain")
	p := rcv.waitDelivered(c.ID + ":upload.expired")
	if p.Type != "upload.expired" || p.Data["status"] != "expired" || p.Data["id"] != c.ID || p.Data["subject"] != "alice" {
		t.Errorf("expired payload %+v", p)
	}
}

// TestWebhookBadWhsecSecret: a secret in the whsec_ form that is not
// base64 fails the load, and the error does not quote it.
func TestWebhookBadWhsecSecret(t *testing.T) {
	s, rcv := newHookSite(t)
	const bad = "whsec_not-base64-at-all!!"
	t.Setenv("CU_TEST_WEBHOOK_SECRET", bad)
	err := loadCaddyfile(s.caddyfile(hookPolicy(rcv.srv.URL, "")))
	t.Cleanup(func() { _ = caddy.Stop() })
	if err == nil || !strings.Contains(err.Error(), "whsec_") || strings.Contains(err.Error(), bad) {
		t.Fatalf("a webhook with a broken whsec_ secret: %v", err)
	}
	// The same config with a well-formed whsec_ secret loads.
	t.Setenv("CU_TEST_WEBHOOK_SECRET", "whsec_CzBVep/E6Q4zWH2ix+wRNluApcrvFDle")
	s.load(s.caddyfile(hookPolicy(rcv.srv.URL, "")))
}

func TestWebhookMissingSecret(t *testing.T) {
	s, rcv := newHookSite(t)
	t.Setenv("CU_TEST_WEBHOOK_SECRET", "")
	err := loadCaddyfile(s.caddyfile(hookPolicy(rcv.srv.URL, "")))
	t.Cleanup(func() { _ = caddy.Stop() })
	if err == nil || !strings.Contains(err.Error(), "secret") {
		t.Fatalf("a webhook whose secret is unset loaded: %v", err)
	}
}

// TestWebhookOrderPerUpload: the application fails an upload's
// upload.confirmed, and the upload is aborted meanwhile: its
// upload.aborted, due at once, waits until upload.confirmed is delivered.
func TestWebhookOrderPerUpload(t *testing.T) {
	s, rcv := newHookSite(t)
	s.load(s.caddyfile(hookPolicy(rcv.srv.URL, "max_attempts 1000")))
	rcv.failType.Store("upload.confirmed")

	id := confirmUpload(s, "alice")
	conf, aborted := id+":upload.confirmed", id+":upload.aborted"
	eventually(t, "a failed attempt", func() bool { return rcv.attempts(conf) >= 1 })
	if resp := s.call("alice", "DELETE", "/"+id, nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("abort: %d", resp.StatusCode)
	}
	// The abort woke the dispatcher; it looks again every second, and
	// retries confirmed within max_backoff (1s). Two more failed attempts
	// are rounds in which aborted was due by its own time.
	failed := rcv.attempts(conf)
	eventually(t, "more failed attempts", func() bool { return rcv.attempts(conf) >= failed+2 })
	if n := rcv.attempts(aborted); n != 0 {
		t.Fatalf("upload.aborted attempted %d times while upload.confirmed failed", n)
	}

	rcv.failType.Store("")
	rcv.waitDelivered(aborted)
	rcv.mu.Lock()
	order := append([]string(nil), rcv.order...)
	rcv.mu.Unlock()
	var mine []string
	for _, o := range order {
		if strings.HasPrefix(o, id+":") {
			mine = append(mine, o)
		}
	}
	// Failures of confirmed, its delivery, then aborted's.
	n := len(mine)
	if n < 3 || mine[n-1] != aborted+" 204" || mine[n-2] != conf+" 204" {
		t.Fatalf("attempts in this order: %v", mine)
	}
	for _, o := range mine[:n-2] {
		if o != conf+" 500" {
			t.Fatalf("attempts in this order: %v", mine)
		}
	}
}
