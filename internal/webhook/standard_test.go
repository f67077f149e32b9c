package webhook

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/caddyupload/caddyupload/storage"
)

var update = flag.Bool("update", false, "rewrite the delivery fixture of the Standard Webhooks tests")

// whsecSecret is a secret in the Standard Webhooks form: 24 bytes, whose
// base64 has both + and /.
const whsecSecret = "whsec_CzBVep/E6Q4zWH2ix+wRNluApcrvFDle"

// standardSecrets are the two forms of secret, and how the specification's
// libraries take each: a whsec_ secret as it is, any other as raw bytes.
var standardSecrets = []struct {
	name, secret, format string
	library              func() (*standardwebhooks.Webhook, error)
}{
	{"whsec secret", whsecSecret, "whsec", func() (*standardwebhooks.Webhook, error) { return standardwebhooks.NewWebhook(whsecSecret) }},
	{"plain secret", testSecret, "raw", func() (*standardwebhooks.Webhook, error) { return standardwebhooks.NewWebhookRaw([]byte(testSecret)) }},
}

// capture is an application endpoint that keeps the requests it gets.
type capture struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []captured
}

type captured struct {
	header http.Header
	body   []byte
}

func newCapture(t *testing.T) *capture {
	c := new(capture)
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.reqs = append(c.reqs, captured{r.Header.Clone(), body})
		c.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *capture) got() []captured {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]captured(nil), c.reqs...)
}

// TestStandardWebhooks: a real delivery, signed now, verifies with the
// specification's own Go library, with either form of secret; the same
// library refuses it with a byte of the body changed or another secret.
// X-Upload-Signature keeps verifying as before.
func TestStandardWebhooks(t *testing.T) {
	for _, sc := range standardSecrets {
		t.Run(sc.name, func(t *testing.T) {
			app := newCapture(t)
			outbox := newOutbox(t.Name(), time.Now)
			id := outbox.add("docs", "rec1", time.Now())
			testDispatcher(t, Config{URL: app.srv.URL, Secret: []byte(sc.secret)}, outbox, time.Now, time.Hour)
			eventually(t, "delivered", func() bool { return outbox.get(id) == nil })
			d := app.got()[0]

			wh, err := sc.library()
			if err != nil {
				t.Fatal(err)
			}
			if err := wh.Verify(d.body, d.header); err != nil {
				t.Fatalf("the Standard Webhooks library refuses a delivery: %v\nheaders %v", err, d.header)
			}
			if got := d.header.Get("Webhook-Id"); got != id {
				t.Errorf("webhook-id %q, want the event id %q", got, id)
			}
			tampered := bytes.Replace(d.body, []byte(`"confirmed"`), []byte(`"rejected"`), 1)
			if bytes.Equal(tampered, d.body) {
				t.Fatal("the body has no status to tamper with")
			}
			if err := wh.Verify(tampered, d.header); err == nil {
				t.Error("the library accepts a tampered body")
			}
			other, _ := standardwebhooks.NewWebhookRaw([]byte("another-secret-0123456789"))
			if err := other.Verify(d.body, d.header); err == nil {
				t.Error("the library accepts another secret")
			}

			// This package's verifier agrees, both ways.
			if got, err := VerifyStandard([]byte(sc.secret), d.header, d.body, time.Now()); err != nil || got != id {
				t.Errorf("VerifyStandard: %q, %v", got, err)
			}
			if _, err := VerifyStandard([]byte(sc.secret), d.header, tampered, time.Now()); err == nil {
				t.Error("VerifyStandard accepts a tampered body")
			}
			// Existing applications verify X-Upload-Signature with the
			// secret's bytes, whatever its form.
			if _, err := Verify([]byte(sc.secret), d.header.Get("X-Upload-Signature"), d.body, time.Now()); err != nil {
				t.Errorf("X-Upload-Signature: %v", err)
			}
		})
	}
}

// fixturePath is the delivery fixture, shared with the Node test
// web/test/webhook-standard.test.js.
var fixturePath = filepath.Join("..", "..", "testdata", "webhook-standard.json")

type standardFixture struct {
	About      string            `json:"about"`
	Deliveries []fixtureDelivery `json:"deliveries"`
}

type fixtureDelivery struct {
	Name string `json:"name"`
	// Secret is the route's secret; SecretFormat how the Standard Webhooks
	// libraries take it: "whsec" as it is, "raw" as its bytes.
	Secret       string            `json:"secret"`
	SecretFormat string            `json:"secret_format"`
	Headers      map[string]string `json:"headers"`
	Body         string            `json:"body"`
}

// fixtureHeaders are the headers the fixture keeps, lowercase.
var fixtureHeaders = []string{"content-type", "webhook-id", "webhook-timestamp", "webhook-signature", "x-upload-signature"}

// TestStandardFixture makes deliveries at a fixed time and checks that the
// checked-in fixture is what they are: the Node test verifies the fixture
// with the standardwebhooks npm package, so the two cannot drift apart.
// Run with -update to rewrite it after a deliberate change.
func TestStandardFixture(t *testing.T) {
	signedAt := time.Unix(1767225600, 0) // 2026-01-01T00:00:00Z
	confirmed := time.Date(2025, 12, 31, 23, 59, 58, 125_000_000, time.UTC)
	rec := &storage.Record{
		ID: "01JABCDEF", Key: "docs/2025/01JABCDEF-resume.pdf", Status: storage.StatusConfirmed,
		Filename: "Résumé \"final\" <v2>.pdf", Size: 12345, Type: "application/pdf",
		Metadata:  map[string]string{"team": "Zürich"},
		CreatedAt: confirmed.Add(-time.Minute), ConfirmedAt: &confirmed,
		Internal: storage.RecordInternal{Subject: "alice@example.com", Store: "s3|x|b", Route: "docs", Notify: true},
	}
	ev := &storage.Event{ID: "01JABCDEF:upload.confirmed", Type: storage.EventConfirmed, Route: "docs", CreatedAt: confirmed, Record: rec}

	fx := standardFixture{
		About: "Webhook deliveries as caddyupload sends them, signed at a fixed time. Written by " +
			"`go test ./internal/webhook -run TestStandardFixture -update`; verified with the " +
			"standardwebhooks npm package by web/test/webhook-standard.test.js.",
	}
	app := newCapture(t)
	for i, sc := range standardSecrets {
		cfg := Config{URL: app.srv.URL, Secret: []byte(sc.secret)}.WithDefaults()
		key, err := StandardKey(cfg.Secret)
		if err != nil {
			t.Fatal(err)
		}
		if err := post(t.Context(), newClient(cfg.Concurrency), &cfg, key, ev, signedAt); err != nil {
			t.Fatal(err)
		}
		d := app.got()[i]
		fd := fixtureDelivery{Name: sc.name, Secret: sc.secret, SecretFormat: sc.format, Headers: map[string]string{}, Body: string(d.body)}
		for _, h := range fixtureHeaders {
			fd.Headers[h] = d.header.Get(h)
		}
		fx.Deliveries = append(fx.Deliveries, fd)

		// The library verifies the fixture (its time is past the
		// tolerance, so without the time check) and refuses it tampered.
		wh, err := sc.library()
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.VerifyIgnoringTimestamp(d.body, d.header); err != nil {
			t.Fatalf("%s: the library refuses the fixture: %v", sc.name, err)
		}
		if err := wh.VerifyIgnoringTimestamp(bytes.Replace(d.body, []byte("Zürich"), []byte("Zurich"), 1), d.header); err == nil {
			t.Fatalf("%s: the library accepts the fixture tampered", sc.name)
		}
	}
	want, err := json.MarshalIndent(fx, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	if *update {
		if err := os.WriteFile(fixturePath, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(fixturePath)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not what the signer produces (run with -update after a deliberate change):\n got %s\nwant %s", fixturePath, got, want)
	}
	if !strings.Contains(string(got), `"webhook-signature": "v1,`) {
		t.Fatalf("the fixture has no webhook-signature: %s", got)
	}
}
