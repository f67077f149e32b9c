// Package webhook delivers the events of a ledger's outbox to the
// application: the upload handler only writes events (in the same
// transaction as the status change) and wakes the route's Dispatcher,
// which POSTs each event as signed JSON until the application answers 2xx,
// backs off between attempts and parks an event after its last one.
//
// The package knows nothing of Caddy: it needs a storage.Outbox, a clock,
// a logger and a Config.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
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
)

// MinSecret is the shortest secret Validate accepts.
const MinSecret = 16

// Config is one route's webhook, with every placeholder resolved.
type Config struct {
	// URL receives the events: an absolute http or https URL.
	URL string
	// Secret is the HMAC key of the signature.
	Secret []byte
	// Timeout bounds one delivery attempt.
	Timeout time.Duration
	// MaxAttempts is how many attempts an event gets before it is parked.
	MaxAttempts int
	// MaxBackoff caps the wait between two attempts.
	MaxBackoff time.Duration
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
	case c.Timeout <= 0:
		return errors.New("timeout must be positive")
	case c.MaxAttempts < 1:
		return errors.New("max_attempts must be at least 1")
	case c.MaxBackoff < time.Second:
		return errors.New("max_backoff must be at least 1s")
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
