package caddyupload

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddyupload/caddyupload/internal/webhook"
)

// parseWebhook parses the webhook subdirective of upload; the current token
// is its name. Syntax:
//
//	webhook <url> {
//	    secret        <secret>
//	    timeout       <duration>
//	    max_attempts  <n>
//	    max_backoff   <duration>
//	    concurrency   <n>
//	}
func parseWebhook(d *caddyfile.Dispenser) (*Webhook, error) {
	w := new(Webhook)
	if err := oneArg(d, &w.URL); err != nil {
		return nil, err
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "secret":
			err = oneArg(d, &w.Secret)
		case "timeout":
			err = durationArg(d, &w.Timeout)
		case "max_attempts":
			var s string
			if err = oneArg(d, &s); err == nil {
				n, convErr := strconv.Atoi(s)
				if convErr != nil || n < 1 {
					return nil, d.Errf("max_attempts: expected a positive integer, got %q", s)
				}
				w.MaxAttempts = n
			}
		case "concurrency":
			var s string
			if err = oneArg(d, &s); err == nil {
				n, convErr := strconv.Atoi(s)
				if convErr != nil || n < 1 || n > webhook.MaxConcurrency {
					return nil, d.Errf("concurrency: expected an integer from 1 to %d, got %q", webhook.MaxConcurrency, s)
				}
				w.Concurrency = n
			}
		case "max_backoff":
			err = durationArg(d, &w.MaxBackoff)
		default:
			return nil, d.Errf("unknown webhook subdirective %q", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	if w.Secret == "" {
		return nil, d.Err("webhook: secret is required")
	}
	return w, nil
}
