package caddyupload

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddyupload/caddyupload/storage"
)

// Webhook defaults.
const (
	defaultWebhookTimeout     = 10 * time.Second
	defaultWebhookMaxAttempts = 12
	defaultWebhookMaxBackoff  = time.Hour
)

// Webhook announces the outcome of each upload of the route to the
// application: an `upload.confirmed`, `upload.rejected`, `upload.aborted` or
// `upload.expired` event, written to the ledger's outbox in the same
// transaction as the status change and POSTed as JSON until the application
// answers 2xx. Delivery is at least once: the application de-duplicates by
// the event id.
//
// The body is
//
//	{"id": "<record id>:<type>", "type": "upload.confirmed",
//	 "created_at": "<RFC 3339 time of the change>",
//	 "data": {<the record as the upload API shows it>, "subject": "<owner>"}}
//
// and every request carries these headers:
//
//	Content-Type:       application/json
//	Webhook-Id:         <event id, the same on every attempt>
//	Webhook-Timestamp:  <t: Unix seconds when this attempt was signed>
//	X-Upload-Signature: t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//
// To verify, compute HMAC-SHA256 with the secret over t, a dot and the raw
// body bytes exactly as received, compare its lowercase hex with v1 in
// constant time, and refuse a t more than 5 minutes away from the current
// time (a replayed request). In Python:
//
//	p = dict(kv.split("=", 1) for kv in request.headers["X-Upload-Signature"].split(","))
//	mac = hmac.new(secret, p["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
//	ok = hmac.compare_digest(mac, p["v1"]) and abs(time.time() - int(p["t"])) <= 300
//
// A failed attempt (any answer but 2xx, or no answer within Timeout) is
// retried after a random wait of up to 1s, 2s, 4s, ... capped at
// MaxBackoff; after MaxAttempts the event is parked until an operator
// replays it through the admin API (`POST /upload/outbox/replay/<id>`).
// Events of a route are delivered one at a time, oldest first.
type Webhook struct {
	// URL receives the events. {env.*} placeholders are resolved when the
	// config loads. Required.
	URL string `json:"url,omitempty"`
	// Secret is the HMAC key of the signature. Use an {env.*} placeholder
	// so the secret stays out of the JSON config. Required.
	Secret string `json:"secret,omitempty"`
	// Timeout bounds one delivery attempt. Default: 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// MaxAttempts is how many attempts an event gets before it is parked.
	// Default: 12.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// MaxBackoff caps the wait between two attempts. Default: 1h.
	MaxBackoff caddy.Duration `json:"max_backoff,omitempty"`

	url        string
	secret     []byte
	client     *http.Client
	dispatcher *dispatcher
}

// provision fills defaults, resolves placeholders and checks the result.
func (w *Webhook) provision() error {
	if w.Timeout == 0 {
		w.Timeout = caddy.Duration(defaultWebhookTimeout)
	}
	if w.MaxAttempts == 0 {
		w.MaxAttempts = defaultWebhookMaxAttempts
	}
	if w.MaxBackoff == 0 {
		w.MaxBackoff = caddy.Duration(defaultWebhookMaxBackoff)
	}
	repl := caddy.NewReplacer()
	w.url = repl.ReplaceKnown(w.URL, "")
	w.secret = []byte(repl.ReplaceKnown(w.Secret, ""))
	u, err := url.Parse(w.url)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("url must be an absolute http or https URL")
	case len(w.secret) < 16:
		return fmt.Errorf("a secret of at least 16 bytes is required (is its environment variable set?)")
	case w.Timeout < 0:
		return fmt.Errorf("timeout must be positive")
	case w.MaxAttempts < 1:
		return fmt.Errorf("max_attempts must be at least 1")
	case time.Duration(w.MaxBackoff) < time.Second:
		return fmt.Errorf("max_backoff must be at least 1s")
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	w.client = &http.Client{
		Transport: transport,
		// A redirect is an answer other than 2xx: retried, never followed
		// to a place the operator did not configure.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return nil
}

// webhookPayload is the JSON body of a delivery.
type webhookPayload struct {
	ID        string      `json:"id"`
	Type      string      `json:"type"`
	CreatedAt time.Time   `json:"created_at"`
	Data      webhookData `json:"data"`
}

// webhookData is the record as the API shows it, plus its owner.
type webhookData struct {
	*storage.Record
	Subject string `json:"subject"`
}

func webhookBody(ev *storage.Event) ([]byte, error) {
	if ev.Record == nil {
		return nil, errors.New("event without record")
	}
	return json.Marshal(webhookPayload{
		ID:        ev.ID,
		Type:      ev.Type,
		CreatedAt: ev.CreatedAt,
		Data:      webhookData{Record: ev.Record, Subject: ev.Record.Internal.Subject},
	})
}

// signWebhook is the X-Upload-Signature value of body signed at t.
func signWebhook(secret []byte, t int64, body []byte) string {
	ts := strconv.FormatInt(t, 10)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// post makes one delivery attempt of ev. An attempt under way finishes
// even when ctx ends, so that its outcome can be recorded; Timeout bounds it.
func (w *Webhook) post(ctx context.Context, ev *storage.Event) error {
	body, err := webhookBody(ev)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(w.Timeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return errors.New("invalid webhook request")
	}
	t := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "caddyupload-webhook")
	req.Header.Set("Webhook-Id", ev.ID)
	req.Header.Set("Webhook-Timestamp", strconv.FormatInt(t, 10))
	req.Header.Set("X-Upload-Signature", signWebhook(w.secret, t, body))
	resp, err := w.client.Do(req)
	if err != nil {
		return deliveryError(err)
	}
	// Draining a little lets the connection be reused; the answer's
	// content is not read, let alone kept.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// deliveryError drops the URL from a client error: it may carry a token in
// its query, and the error ends up in logs and in the ledger.
func deliveryError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.New("no answer within the timeout")
	}
	return err
}

// provisionWebhook starts the route's dispatcher when a webhook is set.
func (h *Handler) provisionWebhook(ctx caddy.Context) error {
	if h.Webhook == nil {
		return nil
	}
	if err := h.Webhook.provision(); err != nil {
		return fmt.Errorf("webhook: %v", err)
	}
	outbox, ok := h.ledger.(storage.Outbox)
	if !ok {
		return fmt.Errorf("webhook: the ledger (%T) has no outbox; use the bolt ledger", h.ledger)
	}
	h.Webhook.dispatcher = newDispatcher(h.Webhook, outbox, ledgerIdentity(h.ledger), h.Name, h.logger)
	go h.Webhook.dispatcher.run(ctx)
	return nil
}

// notifyWebhook wakes the route's dispatcher after a status change, so that
// delivery starts at once rather than at its next tick.
func (h *Handler) notifyWebhook() {
	if h.Webhook != nil && h.Webhook.dispatcher != nil {
		h.Webhook.dispatcher.lease.wake()
	}
}

// ledgerIdentity names a ledger for the dispatch leases: its file when it
// has one, which is what configs sharing it have in common.
func ledgerIdentity(l storage.Ledger) string {
	if p, ok := l.(interface{ Path() string }); ok {
		return p.Path()
	}
	return fmt.Sprintf("%T@%p", l, l)
}
