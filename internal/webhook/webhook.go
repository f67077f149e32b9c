// Package webhook delivers the events of a ledger's outbox to the
// application: the upload handler only writes events (in the same
// transaction as the status change) and wakes the route's Dispatcher,
// which POSTs each event as signed JSON until the application answers 2xx,
// backs off between attempts and parks an event after its last one.
//
// Each delivery is signed twice with the route's secret: as Standard
// Webhooks (https://www.standardwebhooks.com) do, so that their libraries
// verify it, and in the X-Upload-Signature header of earlier releases.
//
// The package knows nothing of Caddy: it needs a storage.Outbox, a clock,
// a logger and a Config.
package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// Defaults of the Config fields left zero.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultMaxAttempts = 12
	DefaultMaxBackoff  = time.Hour
	DefaultConcurrency = 8
)

// MaxConcurrency is the most attempts a dispatcher may have under way at
// once: one batch of due events, so that a listing can keep every
// attempt busy.
const MaxConcurrency = batch

// MinSecret is the shortest secret Validate accepts.
const MinSecret = 16

// Config is one route's webhook, with every placeholder resolved.
type Config struct {
	// URL receives the events: an absolute http or https URL.
	URL string
	// Secret is the route's secret as configured. X-Upload-Signature is
	// keyed by its bytes; webhook-signature by the key it stands for (see
	// StandardKey).
	Secret []byte
	// Timeout bounds one delivery attempt.
	Timeout time.Duration
	// MaxAttempts is how many attempts an event gets before it is parked.
	MaxAttempts int
	// MaxBackoff caps the wait between two attempts.
	MaxBackoff time.Duration
	// Concurrency is how many attempts of different uploads may be under
	// way at once; 1 sends one event after the other.
	Concurrency int
}

// WithDefaults returns c with its zero fields set to the defaults.
func (c Config) WithDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	return c
}

// Validate checks a config with its defaults applied. Its messages name
// the fields as the Caddyfile does and never quote the URL or the secret.
func (c Config) Validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return errors.New("url must be an absolute http or https URL")
	case len(c.Secret) < MinSecret:
		return fmt.Errorf("a secret of at least %d bytes is required (is its environment variable set?)", MinSecret)
	case standardKeyError(c.Secret) != nil:
		return standardKeyError(c.Secret)
	case c.Timeout <= 0:
		return errors.New("timeout must be positive")
	case c.MaxAttempts < 1:
		return errors.New("max_attempts must be at least 1")
	case c.MaxBackoff < time.Second:
		return errors.New("max_backoff must be at least 1s")
	case c.Concurrency < 1 || c.Concurrency > MaxConcurrency:
		return fmt.Errorf("concurrency must be between 1 and %d", MaxConcurrency)
	}
	return nil
}

// Upload is an upload as the application sees it: the record as the
// upload API shows it, plus its owner. It is the data of every event, and
// the body of the forward hand-off, so that an application parses both the
// same way.
type Upload struct {
	*storage.Record
	Subject string `json:"subject"`
}

// payload is the JSON body of a delivery. Receivers depend on its bytes
// (they verify the signature over them): its shape does not change.
type payload struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	CreatedAt time.Time `json:"created_at"`
	Data      Upload    `json:"data"`
}

// body is the JSON of ev, the same on every attempt.
func body(ev *storage.Event) ([]byte, error) {
	if ev.Record == nil {
		return nil, errors.New("event without record")
	}
	return json.Marshal(payload{
		ID:        ev.ID,
		Type:      ev.Type,
		CreatedAt: ev.CreatedAt,
		Data:      Upload{Record: ev.Record, Subject: ev.Record.Internal.Subject},
	})
}

// whsecPrefix marks a secret in the Standard Webhooks form: the prefix and
// the base64 of the key.
const whsecPrefix = "whsec_"

// StandardKey is the HMAC key of the webhook-signature header that secret
// stands for: a secret in the Standard Webhooks form "whsec_<base64>"
// stands for the bytes the base64 decodes to, as the specification's
// libraries read it; any other secret for its own bytes.
func StandardKey(secret []byte) ([]byte, error) {
	rest, ok := bytes.CutPrefix(secret, []byte(whsecPrefix))
	if !ok {
		return secret, nil
	}
	key, err := base64.StdEncoding.DecodeString(string(rest))
	if err != nil {
		return nil, errors.New("a secret starting with whsec_ must continue with standard base64 (padded, + and /)")
	}
	return key, nil
}

// standardKeyError checks that secret yields a key of at least MinSecret
// bytes; its message never quotes the secret.
func standardKeyError(secret []byte) error {
	key, err := StandardKey(secret)
	if err != nil {
		return err
	}
	if len(key) < MinSecret {
		return fmt.Errorf("a whsec_ secret must decode to at least %d bytes", MinSecret)
	}
	return nil
}

// signStandard is the webhook-signature value of body sent as event id at
// t: "v1," and the base64 of HMAC-SHA256(key, "<id>.<t>.<body>").
func signStandard(key []byte, id string, t int64, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(strconv.FormatInt(t, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// sign is the X-Upload-Signature value of body signed at t:
// t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>.
func sign(secret []byte, t int64, body []byte) string {
	ts := strconv.FormatInt(t, 10)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}
