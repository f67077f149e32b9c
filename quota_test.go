package caddyupload

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddyupload/caddyupload/internal/realservers"
	"github.com/caddyupload/caddyupload/storage"
)

func TestQuotaCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`upload {
		quota {
			pending 5
			pending_bytes 1GiB
			uploads 100 per 24h
			bytes 10GiB
			rate 10/1m burst 20
		}
		max_size 5MiB
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	want := Quota{Pending: 5, PendingBytes: 1 << 30, Uploads: &QuotaAmount{Max: 100, Window: caddy.Duration(24 * time.Hour)},
		Bytes: &QuotaAmount{Max: 10 << 30}, Rate: &QuotaRate{Events: 10, Window: caddy.Duration(time.Minute), Burst: 20}}
	got, _ := json.Marshal(h.Quota)
	exp, _ := json.Marshal(want)
	if !bytes.Equal(got, exp) || h.MaxSize != 5<<20 {
		t.Fatalf("parsed %s (max_size %d), want %s", got, h.MaxSize, exp)
	}
	if lim := h.Quota.limits(); lim.Burst != 20 || lim.RateWindow != time.Minute || lim.Uploads != 100 || lim.BytesWindow != 0 {
		t.Fatalf("limits %+v", lim)
	}

	for _, bad := range []struct{ in, want string }{
		{"pending", "wrong argument count"},
		{"pending 0", "not a positive number"},
		{"pending -1", "not a positive number"},
		{"pending_bytes lots", "invalid size"},
		{"uploads 10 per", "want <n> [per <duration>]"},
		{"uploads 10 every 1h", "want <n> [per <duration>]"},
		{"uploads 10 per 500ms", "at least 1s"},
		{"bytes 1GiB per soon", "invalid window"},
		{"rate 10", "want <n>/<duration>"},
		{"rate 10/1m burst", "want <n>/<duration> [burst <n>]"},
		{"rate 10/1m burst 0", "not a positive number"},
		{"rate x/1m", "not a positive number"},
		{"events 10", `unknown quota subdirective "events"`},
	} {
		d := caddyfile.NewTestDispenser("upload {\nquota {\n" + bad.in + "\n}\n}")
		var h Handler
		if err := h.UnmarshalCaddyfile(d); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: %v, want %q", bad.in, err, bad.want)
		}
	}

	valid := func() Handler {
		h := Handler{Quota: &Quota{Pending: 1}}
		h.setDefaults()
		return h
	}
	if h := valid(); h.Validate() != nil {
		t.Fatalf("valid quota refused: %v", h.Validate())
	}
	for name, q := range map[string]*Quota{
		"empty":          {},
		"uploads 0":      {Uploads: &QuotaAmount{}},
		"rate no window": {Rate: &QuotaRate{Events: 1}},
		"short window":   {Bytes: &QuotaAmount{Max: 1, Window: caddy.Duration(time.Millisecond)}},
		"negative":       {Pending: -1},
	} {
		h := valid()
		h.Quota = q
		if err := h.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestQuotaErrorMessages(t *testing.T) {
	for _, c := range []struct {
		e     storage.QuotaError
		want  []string
		retry int
	}{
		{storage.QuotaError{Limit: storage.LimitPending, Max: 5, Used: 5, Need: 1}, []string{"quota exceeded (pending)", "at most 5 uploads may be pending"}, 0},
		{storage.QuotaError{Limit: storage.LimitPendingBytes, Max: 1 << 30, Used: 900 << 20, Need: 200 << 20}, []string{"1.0 GiB", "900 MiB", "200 MiB"}, 0},
		{storage.QuotaError{Limit: storage.LimitPendingBytes, Max: 1 << 30, Used: 0, Need: 2 << 30}, []string{"counts the route's max_size"}, 0},
		{storage.QuotaError{Limit: storage.LimitUploads, Max: 100, Window: 24 * time.Hour, Used: 100, Need: 1, RetryAfter: 90*time.Minute + 300*time.Millisecond},
			[]string{"at most 100 uploads per 24h", "try again in 1h30m1s"}, 5401},
		{storage.QuotaError{Limit: storage.LimitUploads, Max: 3, Used: 3, Need: 1}, []string{"at most 3 uploads in all"}, 0},
		{storage.QuotaError{Limit: storage.LimitBytes, Max: 10 << 30, Window: time.Hour, Used: 10 << 30, Need: 1, RetryAfter: time.Minute},
			[]string{"at most 10 GiB of uploads per 1h", "try again in 1m"}, 60},
		{storage.QuotaError{Limit: storage.LimitRate, Max: 10, Window: time.Minute, Burst: 20, Need: 1, RetryAfter: time.Nanosecond},
			[]string{"at most 10 uploads per 1m (bursts of 20)", "try again in 1s"}, 1},
	} {
		ae := errQuota(&c.e, 2<<30)
		if ae.Status != http.StatusTooManyRequests || ae.Code != "quota_exceeded" || ae.RetryAfter != c.retry {
			t.Errorf("%+v: %d %s retry %d, want 429 quota_exceeded retry %d", c.e, ae.Status, ae.Code, ae.RetryAfter, c.retry)
		}
		for _, w := range c.want {
			if !strings.Contains(ae.Message, w) {
				t.Errorf("message %q lacks %q", ae.Message, w)
			}
		}
	}
}

// quotaAnswer is one create's answer, taken without failing the test from
// another goroutine.
type quotaAnswer struct {
	status     int
	id         string
	code, msg  string
	retryAfter string
	err        error
}

func (s *testSite) tryCreate(user string, size int64) quotaAnswer {
	body, _ := json.Marshal(map[string]any{"filename": "f.txt", "size": size, "type": "text/plain"})
	req, _ := http.NewRequest(http.MethodPost, s.base+"/up/", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(user, testUsers[user])
	resp, err := noRedirect.Do(req)
	if err != nil {
		return quotaAnswer{err: err}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := quotaAnswer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	var v struct {
		ID    string `json:"id"`
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		a.err = fmt.Errorf("%d %s: %v", resp.StatusCode, raw, err)
	}
	a.id, a.code, a.msg = v.ID, v.Error.Code, v.Error.Message
	return a
}

// hammer sends n creates by user at once and returns how many got 201 and
// the refusals; anything but 201 or 429 quota_exceeded fails the test.
func (s *testSite) hammer(user string, n int, size int64) (ids []string, refused []quotaAnswer) {
	s.t.Helper()
	answers := make([]quotaAnswer, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range answers {
		wg.Go(func() {
			<-start
			answers[i] = s.tryCreate(user, size)
		})
	}
	close(start)
	wg.Wait()
	for _, a := range answers {
		switch {
		case a.err != nil:
			s.t.Fatalf("create: %v", a.err)
		case a.status == http.StatusCreated:
			ids = append(ids, a.id)
		case a.status == http.StatusTooManyRequests && a.code == "quota_exceeded":
			refused = append(refused, a)
		default:
			s.t.Fatalf("create: %d %s %s", a.status, a.code, a.msg)
		}
	}
	return ids, refused
}

type usageAnswer struct {
	Pending, PendingBytes, Uploads, Bytes struct {
		Used          int64  `json:"used"`
		Limit         *int64 `json:"limit"`
		Remaining     *int64 `json:"remaining"`
		WindowSeconds int64  `json:"window_seconds"`
	}
	Rate *struct {
		Remaining, Limit, WindowSeconds, Burst int64
	}
}

func (s *testSite) usage(user string) usageAnswer {
	s.t.Helper()
	var raw json.RawMessage
	if resp := s.call(user, "GET", "/usage", nil, &raw); resp.StatusCode != http.StatusOK {
		s.t.Fatalf("GET /usage: %d %s", resp.StatusCode, raw)
	}
	// The JSON names are snake_case; map them onto the struct's fields.
	var m map[string]json.RawMessage
	_ = json.Unmarshal(raw, &m)
	var u usageAnswer
	for name, dst := range map[string]any{"pending": &u.Pending, "pending_bytes": &u.PendingBytes, "uploads": &u.Uploads, "bytes": &u.Bytes} {
		if err := json.Unmarshal(m[name], dst); err != nil {
			s.t.Fatalf("usage %s: %s: %v", name, raw, err)
		}
	}
	if r, ok := m["rate"]; ok {
		var rate struct {
			Remaining     int64 `json:"remaining"`
			Limit         int64 `json:"limit"`
			WindowSeconds int64 `json:"window_seconds"`
			Burst         int64 `json:"burst"`
		}
		if err := json.Unmarshal(r, &rate); err != nil {
			s.t.Fatal(err)
		}
		u.Rate = &struct{ Remaining, Limit, WindowSeconds, Burst int64 }{rate.Remaining, rate.Limit, rate.WindowSeconds, rate.Burst}
	}
	return u
}

// quotaHammer is the hammer test on whatever ledger policy names: 32
// parallel creates of one subject against pending 5, then against a rate,
// with counters that survive a reload and a restart (the ledger reopened).
func quotaHammer(t *testing.T, s *testSite, ledger string) {
	route := "hammer"
	cfg := func(q string) string {
		return withMetrics(s.caddyfile("name " + route + "\n" + ledger + "\nquota {\n" + q + "\n}"))
	}
	s.load(cfg("pending 5"))
	before := s.scrape()

	ids, refused := s.hammer("alice", 32, 10)
	alices := ids
	if len(ids) != 5 || len(refused) != 27 {
		t.Fatalf("%d of 32 parallel creates fit pending 5 (%d refused)", len(ids), len(refused))
	}
	for _, r := range refused {
		if r.retryAfter != "" || !strings.Contains(r.msg, "(pending)") || !strings.Contains(r.msg, "at most 5") {
			t.Fatalf("refusal by pending: Retry-After %q, message %q", r.retryAfter, r.msg)
		}
	}
	// Another subject is not affected.
	if a := s.tryCreate("bob", 10); a.status != http.StatusCreated {
		t.Fatalf("bob's create: %+v", a)
	}
	u := s.usage("alice")
	if u.Pending.Used != 5 || *u.Pending.Limit != 5 || *u.Pending.Remaining != 0 || u.PendingBytes.Used != 50 || u.PendingBytes.Limit != nil {
		t.Fatalf("alice's usage %+v", u)
	}
	if u := s.usage("bob"); u.Pending.Used != 1 || *u.Pending.Remaining != 4 {
		t.Fatalf("bob's usage %+v", u)
	}
	expectMoved(t, before, s.scrape(), map[string]float64{
		m("caddy_upload_quota_refused_total", "route", route, "limit", "pending"): 27,
		m("caddy_upload_created_total", "route", route, "kind", "PUT"):            6,
	})

	// A reload (another policy) keeps the counts, and adds a rate.
	if err := loadCaddyfile(cfg("pending 5\nrate 3/1h burst 3")); err != nil {
		t.Fatal(err)
	}
	s.waitServing()
	if a := s.tryCreate("alice", 10); a.status != http.StatusTooManyRequests || !strings.Contains(a.msg, "(pending)") {
		t.Fatalf("alice after the reload: %+v", a)
	}
	// Bob has 4 places left and 3 tokens: the rate refuses, with the
	// time until the next token.
	ids, refused = s.hammer("bob", 32, 10)
	if len(ids) != 3 || len(refused) != 29 {
		t.Fatalf("%d of 32 parallel creates fit a rate of 3 (%d refused)", len(ids), len(refused))
	}
	for _, r := range refused {
		ra, err := strconv.Atoi(r.retryAfter)
		if err != nil || ra < 1190 || ra > 1200 || !strings.Contains(r.msg, "(rate)") {
			t.Fatalf("refusal by rate: Retry-After %q (want about 1200s, an hour over 3), message %q", r.retryAfter, r.msg)
		}
	}
	if u := s.usage("bob"); u.Rate == nil || u.Rate.Remaining != 0 || u.Rate.Limit != 3 || u.Rate.WindowSeconds != 3600 || u.Pending.Used != 4 {
		t.Fatalf("bob's usage %+v (rate %+v)", u, u.Rate)
	}

	// Stopped and started again: the ledger is reopened, the counts stay.
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	s.load(cfg("pending 5\nrate 3/1h burst 3\nuploads 1000"))
	if a := s.tryCreate("alice", 10); a.status != http.StatusTooManyRequests || !strings.Contains(a.msg, "(pending)") {
		t.Fatalf("alice after a restart: %+v", a)
	}
	if a := s.tryCreate("bob", 10); a.status != http.StatusTooManyRequests || !strings.Contains(a.msg, "(rate)") || a.retryAfter == "" {
		t.Fatalf("bob after a restart: %+v", a)
	}
	if u := s.usage("alice"); u.Uploads.Used != 5 || *u.Uploads.Remaining != 995 {
		t.Fatalf("alice's uploads after a restart: %+v", u.Uploads)
	}
	// Abort frees a place, for exactly one more.
	if resp := s.call("alice", "DELETE", "/"+alices[0], nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("abort: %d", resp.StatusCode)
	}
	ids, _ = s.hammer("alice", 8, 10)
	if len(ids) != 1 {
		t.Fatalf("%d creates fit the place an abort freed", len(ids))
	}
}

func TestQuotaHammer(t *testing.T) {
	s := newSite(t, oneServer(t))
	quotaHammer(t, s, "")
}

func TestQuotaHammerPostgres(t *testing.T) {
	srv := realservers.StartPostgres(t)
	t.Setenv("CU_TEST_PG_DSN", srv.NewDatabase(t))
	s := newSite(t, oneServer(t))
	quotaHammer(t, s, "ledger postgres {\ndsn {env.CU_TEST_PG_DSN}\nschema quota\n}")
}

// TestQuotaLifecycle: pending places come back when uploads are confirmed,
// aborted or expire; confirmations count against a windowed limit, whose
// refusal says when the oldest one leaves the window.
func TestQuotaLifecycle(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		s := newSite(t, srv)
		s.load(s.caddyfile("url_ttl 10s\npending_ttl 10s\nsweep_interval 1s\nquota {\npending 2\nuploads 3 per 1h\n}"))
		body := []byte("hello")
		c1 := s.create("alice", "a.txt", int64(len(body)), "text/plain")
		c2 := s.create("alice", "b.txt", int64(len(body)), "text/plain")
		refusedBy := func(limit string) quotaAnswer {
			t.Helper()
			a := s.tryCreate("alice", int64(len(body)))
			if a.status != http.StatusTooManyRequests || a.code != "quota_exceeded" || !strings.Contains(a.msg, "("+limit+")") {
				t.Fatalf("create: %+v, want a refusal by %s", a, limit)
			}
			return a
		}
		refusedBy("pending")

		// Confirmed: the place is free, and the upload counts as confirmed.
		if st := s.put(c1, body, nil); st != http.StatusOK {
			t.Fatalf("PUT: %d", st)
		}
		var rec record
		if resp := s.call("alice", "POST", "/"+c1.ID+"/complete", nil, &rec); resp.StatusCode != http.StatusOK {
			t.Fatalf("complete: %d", resp.StatusCode)
		}
		c3 := s.create("alice", "c.txt", int64(len(body)), "text/plain")
		refusedBy("pending")
		if u := s.usage("alice"); u.Pending.Used != 2 || u.Uploads.Used != 3 || *u.Uploads.Remaining != 0 || u.Uploads.WindowSeconds != 3600 {
			t.Fatalf("usage %+v", u)
		}

		// Aborted: the place is free, and the upload counts no more.
		if resp := s.call("alice", "DELETE", "/"+c2.ID, nil, nil); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("abort: %d", resp.StatusCode)
		}
		c4 := s.create("alice", "d.txt", int64(len(body)), "text/plain")

		// Complete c3 as well: 2 confirmed + c4 pending fill uploads 3 per
		// 1h, while pending has room. The refusal says when the first
		// confirmation leaves the hour (within a 64th of it).
		if st := s.put(c3, body, nil); st != http.StatusOK {
			t.Fatalf("PUT: %d", st)
		}
		if resp := s.call("alice", "POST", "/"+c3.ID+"/complete", nil, &rec); resp.StatusCode != http.StatusOK {
			t.Fatalf("complete: %d", resp.StatusCode)
		}
		a := refusedBy("uploads")
		ra, err := strconv.Atoi(a.retryAfter)
		if err != nil || ra < 3500 || ra > 3600+3600/64+1 {
			t.Fatalf("Retry-After %q, want about an hour", a.retryAfter)
		}
		// Bob is not affected.
		if b := s.tryCreate("bob", 5); b.status != http.StatusCreated {
			t.Fatalf("bob: %+v", b)
		}

		// Expired: c4 is swept, which frees its place among the uploads.
		eventually(t, "the abandoned upload expired", func() bool {
			s.call("alice", "GET", "/"+c4.ID, nil, &rec)
			return rec.Status == "expired"
		})
		s.create("alice", "e.txt", int64(len(body)), "text/plain")
		refusedBy("uploads")
	})
}

// TestQuotaUppy: an upload Uppy creates without a size counts the route's
// max_size against pending_bytes until it is confirmed with its real
// size; the refusal carries the top-level message Uppy shows.
func TestQuotaUppy(t *testing.T) {
	s := newSite(t, oneServer(t))
	s.load(s.caddyfile("max_size 10MiB\nmultipart_threshold 5MiB\npart_size 5MiB\nquota {\npending_bytes 15MiB\n}"))
	key, id := s.uppyCreate()
	var e apiErr
	resp := s.call("alice", "POST", "/s3/multipart", map[string]any{"filename": "w.bin", "type": "application/octet-stream"}, &e)
	if resp.StatusCode != http.StatusTooManyRequests || e.Error.Code != "quota_exceeded" || !strings.Contains(e.Message, "max_size") || e.Message != e.Error.Message {
		t.Fatalf("second unsized upload: %d %+v", resp.StatusCode, e)
	}
	// A declared 5 MiB fits beside it: 10 + 5.
	if a := s.tryCreate("alice", 5<<20); a.status != http.StatusCreated {
		t.Fatalf("a sized upload beside it: %+v", a)
	}
	if a := s.tryCreate("alice", 1); a.status != http.StatusTooManyRequests {
		t.Fatalf("one byte more: %+v", a)
	}
	// Confirmed with 6 MiB: its 10 MiB are free again.
	parts := s.uppyParts(key, id, 5<<20, 1<<20)
	if resp := s.call("alice", "POST", "/s3/multipart/"+id+"/complete?key="+key, map[string]any{"parts": parts}, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("complete: %d", resp.StatusCode)
	}
	if u := s.usage("alice"); u.PendingBytes.Used != 5<<20 || u.Bytes.Used != 11<<20 {
		t.Fatalf("usage after the confirmation %+v", u)
	}
	s.uppyCreate()
}
