package caddyupload

import (
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddyupload/caddyupload/internal/webhook"
	"github.com/caddyupload/caddyupload/storage"
)

// Webhook announces the outcome of each upload of the route to the
// application: an `upload.confirmed`, `upload.rejected`, `upload.aborted` or
// `upload.expired` event, written to the ledger's outbox in the same
// transaction as the status change and POSTed as JSON until the application
// answers 2xx. Delivery is at least once: the application de-duplicates by
// the event id (webhook-id).
//
// The body is
//
//	{"id": "<record id>:<type>", "type": "upload.confirmed",
//	 "created_at": "<RFC 3339 time of the change>",
//	 "data": {<the record as the upload API shows it>, "subject": "<owner>"}}
//
// and every request carries these headers, signed as Standard Webhooks
// (https://www.standardwebhooks.com) are, so that their libraries verify
// them:
//
//	Content-Type:       application/json
//	webhook-id:         <event id, the same on every attempt>
//	webhook-timestamp:  <t: Unix seconds when this attempt was signed>
//	webhook-signature:  v1,<base64 HMAC-SHA256(key, "<id>.<t>.<body>")>
//	X-Upload-Signature: t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//
// The key of webhook-signature is the secret in the Standard Webhooks form
// "whsec_<base64>" decoded, or the bytes of any other secret.
// X-Upload-Signature, the scheme of earlier releases, is keyed by the
// secret's bytes as configured, whatever its form. To verify it, compute
// HMAC-SHA256 with the secret over t, a dot and the raw body bytes exactly
// as received, compare its lowercase hex with v1 in constant time, and
// refuse a t more than 5 minutes away from the current time (a replayed
// request). In Python:
//
//	p = dict(kv.split("=", 1) for kv in request.headers["X-Upload-Signature"].split(","))
//	mac = hmac.new(secret, p["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
//	ok = hmac.compare_digest(mac, p["v1"]) and abs(time.time() - int(p["t"])) <= 300
//
// A failed attempt (any answer but 2xx, or no answer within Timeout) is
// retried after a random wait of up to 1s, 2s, 4s, ... capped at
// MaxBackoff; after MaxAttempts the event is parked until an operator
// replays it through the admin API (`POST /upload/outbox/replay/<id>`).
// Events of a route are delivered oldest first, up to Concurrency at a
// time; an upload's events one after the other, in the order they
// happened, the later waiting while an earlier one is retried or parked.
// Events of different uploads have no order.
type Webhook struct {
	// URL receives the events. {env.*} placeholders are resolved when the
	// config loads. Required.
	URL string `json:"url,omitempty"`
	// Secret keys the signatures: in the Standard Webhooks form
	// "whsec_<base64>" (at least 16 bytes once decoded), or any other
	// string of at least 16 bytes, used as its bytes. Use an {env.*}
	// placeholder so the secret stays out of the JSON config. Required.
	Secret string `json:"secret,omitempty"`
	// Timeout bounds one delivery attempt. Default: 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// MaxAttempts is how many attempts an event gets before it is parked.
	// Default: 12.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// MaxBackoff caps the wait between two attempts. Default: 1h.
	MaxBackoff caddy.Duration `json:"max_backoff,omitempty"`
	// Concurrency is how many events may be under way to the application
	// at once, each of a different upload (1 to 100); 1 sends them one
	// after the other. Default: 8.
	Concurrency int `json:"concurrency,omitempty"`

	cfg        webhook.Config
	dispatcher *webhook.Dispatcher
}

// provision fills defaults, resolves placeholders and checks the result.
func (w *Webhook) provision() error {
	cfg := webhook.Config{
		Timeout:     time.Duration(w.Timeout),
		MaxAttempts: w.MaxAttempts,
		MaxBackoff:  time.Duration(w.MaxBackoff),
		Concurrency: w.Concurrency,
	}.WithDefaults()
	w.Timeout = caddy.Duration(cfg.Timeout)
	w.MaxAttempts = cfg.MaxAttempts
	w.MaxBackoff = caddy.Duration(cfg.MaxBackoff)
	w.Concurrency = cfg.Concurrency
	repl := caddy.NewReplacer()
	cfg.URL = repl.ReplaceKnown(w.URL, "")
	cfg.Secret = []byte(repl.ReplaceKnown(w.Secret, ""))
	if err := cfg.Validate(); err != nil {
		return err
	}
	w.cfg = cfg
	return nil
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
		return fmt.Errorf("webhook: the ledger (%T) has no outbox; use a ledger with an outbox (bolt or postgres)", h.ledger)
	}
	d, err := webhook.Start(ctx, h.Webhook.cfg, webhook.Options{Outbox: outbox, Route: h.Name, Logger: h.logger, OnAttempt: h.metrics.webhookAttempt, OnDue: h.metrics.webhookOutboxDue})
	if err != nil {
		return fmt.Errorf("webhook: %v", err)
	}
	h.Webhook.dispatcher = d
	return nil
}

// notifyWebhook wakes the route's dispatcher after a status change, so that
// delivery starts at once rather than at its next tick.
func (h *Handler) notifyWebhook() {
	if h.Webhook != nil && h.Webhook.dispatcher != nil {
		h.Webhook.dispatcher.Wake()
	}
}
