package webhook

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

const testSecret = "whsec-0123456789abcdef"

func TestSign(t *testing.T) {
	now := time.Now()
	body := []byte(`{"id":"x:upload.confirmed"}`)
	header := sign([]byte(testSecret), now.Unix(), body)
	if ts, err := Verify([]byte(testSecret), header, body, now); err != nil || ts != now.Unix() {
		t.Fatalf("a fresh signature does not verify: %v", err)
	}
	// A vector computed elsewhere (Python's hmac), so that a change of the
	// scheme cannot pass by changing sign and verify together.
	const want = "t=1700000000,v1=8fc10ee80d3058845edeb1c7bcee7b8ea4b1c0e16d4f81cf6c4ec320567bbd9d"
	if got := sign([]byte(testSecret), 1700000000, body); got != want {
		t.Errorf("sign = %s, want %s", got, want)
	}
	for name, check := range map[string]func() error{
		"tampered body": func() error {
			_, err := Verify([]byte(testSecret), header, []byte(`{"id":"y:upload.confirmed"}`), now)
			return err
		},
		"other secret": func() error {
			_, err := Verify([]byte("another-secret-0123"), header, body, now)
			return err
		},
		"replayed late": func() error {
			_, err := Verify([]byte(testSecret), header, body, now.Add(6*time.Minute))
			return err
		},
	} {
		if check() == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

func TestSignStandard(t *testing.T) {
	body := []byte(`{"id":"x:upload.confirmed"}`)
	whsecKey, err := StandardKey([]byte(whsecSecret))
	if err != nil || len(whsecKey) != 24 {
		t.Fatalf("StandardKey(whsec secret) = %d bytes, %v", len(whsecKey), err)
	}
	if key, err := StandardKey([]byte(testSecret)); err != nil || string(key) != testSecret {
		t.Fatalf("StandardKey(plain secret) = %q, %v; want its bytes", key, err)
	}
	// Vectors computed elsewhere (Python's hmac and base64).
	for _, tc := range []struct {
		key  []byte
		want string
	}{
		{[]byte(testSecret), "v1,CIvUVJKbqaVLkzBeHfZ7zvCjdDrGPI7jAdCk0XbA5N0="},
		{whsecKey, "v1,on/9EQE+kGadCmcLi58bnZ9FwKrnsDmNUaIIiPokzKs="},
	} {
		if got := signStandard(tc.key, "x:upload.confirmed", 1700000000, body); got != tc.want {
			t.Errorf("signStandard = %s, want %s", got, tc.want)
		}
	}

	now := time.Unix(1700000000, 0)
	h := http.Header{}
	h.Set("Webhook-Id", "x:upload.confirmed")
	h.Set("Webhook-Timestamp", "1700000000")
	h.Set("Webhook-Signature", "v1a,bm90IHRoaXMgb25l v1,on/9EQE+kGadCmcLi58bnZ9FwKrnsDmNUaIIiPokzKs=")
	if id, err := VerifyStandard([]byte(whsecSecret), h, body, now.Add(4*time.Minute)); err != nil || id != "x:upload.confirmed" {
		t.Fatalf("VerifyStandard of a signature among others: %q, %v", id, err)
	}
	for name, mod := range map[string]func(h http.Header, secret *string, at *time.Time){
		"other id":        func(h http.Header, _ *string, _ *time.Time) { h.Set("Webhook-Id", "y:upload.confirmed") },
		"other timestamp": func(h http.Header, _ *string, _ *time.Time) { h.Set("Webhook-Timestamp", "1700000001") },
		"no id":           func(h http.Header, _ *string, _ *time.Time) { h.Del("Webhook-Id") },
		"no signature":    func(h http.Header, _ *string, _ *time.Time) { h.Del("Webhook-Signature") },
		"other version": func(h http.Header, _ *string, _ *time.Time) {
			h.Set("Webhook-Signature", "v2,on/9EQE+kGadCmcLi58bnZ9FwKrnsDmNUaIIiPokzKs=")
		},
		"bad timestamp":    func(h http.Header, _ *string, _ *time.Time) { h.Set("Webhook-Timestamp", "soon") },
		"raw whsec secret": func(_ http.Header, s *string, _ *time.Time) { *s = "whsec_" + string(whsecKey) },
		"plain secret":     func(_ http.Header, s *string, _ *time.Time) { *s = testSecret },
		"late":             func(_ http.Header, _ *string, at *time.Time) { *at = now.Add(6 * time.Minute) },
		"early":            func(_ http.Header, _ *string, at *time.Time) { *at = now.Add(-6 * time.Minute) },
	} {
		hh, secret, at := h.Clone(), whsecSecret, now
		mod(hh, &secret, &at)
		if _, err := VerifyStandard([]byte(secret), hh, body, at); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

// TestBody pins the bytes receivers get: the shape of the body, which
// record fields show, and the JSON encoding of each (these are the bytes
// the previous releases sent for the same events).
func TestBody(t *testing.T) {
	confirmed := time.Date(2026, 3, 4, 5, 6, 8, 250_000_000, time.UTC)
	rec := &storage.Record{
		ID: "01JABCDEF", Key: "docs/2026/01JABCDEF-report.pdf", Status: storage.StatusConfirmed,
		Filename: "report \"final\" <v2>.pdf", Size: 12345, Type: "application/pdf",
		SHA256:    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Metadata:  map[string]string{"b": "2", "a": "1"},
		CreatedAt: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC), ConfirmedAt: &confirmed,
		Internal: storage.RecordInternal{Subject: "alice@example.com", Store: "s3|x|b", Route: "docs", Kind: "PUT", UploadID: "u", Notify: true},
	}
	aborted := &storage.Record{
		ID: "01JPENDING", Key: "k", Status: storage.StatusAborted, Filename: "a.txt", Size: 10, Type: "text/plain",
		CreatedAt: time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("X", 3600)), Internal: storage.RecordInternal{Subject: "bob"},
	}
	for _, tc := range []struct {
		ev   *storage.Event
		want string
	}{
		{
			&storage.Event{ID: "01JABCDEF:upload.confirmed", Type: storage.EventConfirmed, Route: "docs", CreatedAt: confirmed, Record: rec, Attempts: 3, LastError: "status 500"},
			`{"id":"01JABCDEF:upload.confirmed","type":"upload.confirmed","created_at":"2026-03-04T05:06:08.25Z","data":{"id":"01JABCDEF","key":"docs/2026/01JABCDEF-report.pdf","status":"confirmed","filename":"report \"final\" \u003cv2\u003e.pdf","size":12345,"type":"application/pdf","sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","metadata":{"a":"1","b":"2"},"created_at":"2026-03-04T05:06:07Z","confirmed_at":"2026-03-04T05:06:08.25Z","subject":"alice@example.com"}}`,
		},
		{
			&storage.Event{ID: "01JPENDING:upload.aborted", Type: storage.EventAborted, CreatedAt: time.Date(2026, 3, 4, 5, 6, 7, 1, time.UTC), Record: aborted},
			`{"id":"01JPENDING:upload.aborted","type":"upload.aborted","created_at":"2026-03-04T05:06:07.000000001Z","data":{"id":"01JPENDING","key":"k","status":"aborted","filename":"a.txt","size":10,"type":"text/plain","created_at":"2026-03-04T05:06:07+01:00","subject":"bob"}}`,
		},
	} {
		got, err := body(tc.ev)
		if err != nil || string(got) != tc.want {
			t.Errorf("body of %s:\n got %s (%v)\nwant %s", tc.ev.ID, got, err, tc.want)
		}
	}
	if _, err := body(&storage.Event{ID: "x:upload.confirmed"}); err == nil {
		t.Error("an event without a record has a body")
	}
}

func TestConfig(t *testing.T) {
	c := Config{URL: "https://app.example.com/hooks?token=x", Secret: []byte(testSecret)}.WithDefaults()
	if c.Timeout != 10*time.Second || c.MaxAttempts != 12 || c.MaxBackoff != time.Hour || c.Concurrency != 8 {
		t.Errorf("defaults: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("a valid config: %v", err)
	}
	if c := (Config{URL: c.URL, Secret: []byte(whsecSecret)}).WithDefaults(); c.Validate() != nil {
		t.Fatalf("a whsec secret: %v", c.Validate())
	}
	set := Config{URL: "http://a/h", Secret: []byte(testSecret), Timeout: time.Second, MaxAttempts: 3, MaxBackoff: time.Minute, Concurrency: 1}
	if got := set.WithDefaults(); got.Timeout != set.Timeout || got.MaxAttempts != set.MaxAttempts || got.MaxBackoff != set.MaxBackoff || got.Concurrency != 1 {
		t.Errorf("defaults replaced set values: %+v", got)
	}
	for name, mod := range map[string]func(*Config){
		"no secret":       func(c *Config) { c.Secret = nil },
		"short secret":    func(c *Config) { c.Secret = []byte("0123456789abcde") },
		"relative url":    func(c *Config) { c.URL = "/hook" },
		"ftp url":         func(c *Config) { c.URL = "ftp://a/h" },
		"no host":         func(c *Config) { c.URL = "http:///h" },
		"negative time":   func(c *Config) { c.Timeout = -time.Second },
		"no attempts":     func(c *Config) { c.MaxAttempts = 0 },
		"short backoff":   func(c *Config) { c.MaxBackoff = time.Second - 1 },
		"negative tries":  func(c *Config) { c.MaxAttempts = -1 },
		"no concurrency":  func(c *Config) { c.Concurrency = 0 },
		"too concurrent":  func(c *Config) { c.Concurrency = MaxConcurrency + 1 },
		"unparseable url": func(c *Config) { c.URL = "http://a b/%zz" },
		"whsec not b64":   func(c *Config) { c.Secret = []byte("whsec_" + testSecret) },
		"whsec url b64":   func(c *Config) { c.Secret = []byte("whsec_CzBVep_E6Q4zWH2ix-wRNluApcrvFDle") },
		"whsec too short": func(c *Config) { c.Secret = []byte("whsec_MDEyMzQ1Njc4OWFiY2Rl") },
	} {
		bad := c
		mod(&bad)
		err := bad.Validate()
		if err == nil {
			t.Errorf("%s: valid", name)
		} else if strings.Contains(err.Error(), testSecret) || strings.Contains(err.Error(), "token") {
			t.Errorf("%s: the error quotes the config: %v", name, err)
		}
	}
}
