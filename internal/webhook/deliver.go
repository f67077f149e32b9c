package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// newClient is the HTTP client of a dispatcher that makes up to
// concurrency attempts at once.
func newClient(concurrency int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// Keep a connection for every attempt that may be under way, rather
	// than the default two, so that concurrent attempts reuse theirs.
	t.MaxIdleConnsPerHost = max(concurrency, 2)
	return &http.Client{
		Transport: t,
		// A redirect is an answer other than 2xx: retried, never followed
		// to a place the operator did not configure.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// post makes one delivery attempt of ev, signed at now with cfg.Secret and
// with key, its Standard Webhooks key. An attempt under way finishes even
// when ctx ends, so that its outcome can be recorded; cfg.Timeout bounds
// it.
func post(ctx context.Context, client *http.Client, cfg *Config, key []byte, ev *storage.Event, now time.Time) error {
	b, err := body(ev)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.URL, bytes.NewReader(b))
	if err != nil {
		return errors.New("invalid webhook request")
	}
	t := now.Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "caddyupload-webhook")
	// Standard Webhooks: the id is the event's, the same on every attempt,
	// so that receivers de-duplicate by it.
	req.Header.Set("Webhook-Id", ev.ID)
	req.Header.Set("Webhook-Timestamp", strconv.FormatInt(t, 10))
	req.Header.Set("Webhook-Signature", signStandard(key, ev.ID, t, b))
	req.Header.Set("X-Upload-Signature", sign(cfg.Secret, t, b))
	resp, err := client.Do(req)
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
