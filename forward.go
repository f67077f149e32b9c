package caddyupload

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddyupload/caddyupload/internal/pct"
	"github.com/caddyupload/caddyupload/internal/webhook"
	"github.com/caddyupload/caddyupload/storage"
)

// Forward hands each successful completion to the next handler (usually
// reverse_proxy to the application) as a POST carrying the upload's facts
// in trusted headers, signed with HMAC-SHA256. The record is confirmed only
// when the application answers 2xx, and the client gets the application's
// answer. The application should treat X-Upload-Id as an idempotency key:
// a completion retried after a failure may reach it twice.
//
// Headers: X-Upload-Id, X-Upload-Key, X-Upload-Size, X-Upload-Type,
// X-Upload-Sha256, X-Upload-Subject, X-Upload-Filename (RFC 8187:
// UTF-8”percent-encoded), X-Upload-Body-Sha256 (hex SHA-256 of the JSON
// body, which carries the metadata), X-Upload-Timestamp (Unix seconds) and
// X-Upload-Signature: "v1=" + hex(HMAC-SHA256(secret, canonical)), where
// canonical is the timestamp and the eight values above, in that order,
// joined by "\n". Copies of any X-Upload-* header a client sends are
// removed before the request goes on.
type Forward struct {
	// Path replaces the path of the forwarded request, e.g.
	// /internal/uploads/confirmed. Default: the request's own path.
	Path string `json:"path,omitempty"`
	// Secret keys the signature; use an {env.*} placeholder. Required.
	Secret string `json:"secret"`
	// Timeout bounds the wait for the application's answer. The record is
	// held for that long (the sweeper leaves it alone), and the wait goes
	// on if the client disconnects, so an upload the application accepts
	// is always confirmed. Default: 1m.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	secret []byte
}

// forwardHeaders is the order the signature covers.
var forwardHeaders = []string{"X-Upload-Id", "X-Upload-Key", "X-Upload-Size", "X-Upload-Type", "X-Upload-Sha256", "X-Upload-Subject", "X-Upload-Filename", "X-Upload-Body-Sha256"}

const maxForwardResponse = 1 << 20

func (f *Forward) provision() error {
	secret := caddy.NewReplacer().ReplaceAll(f.Secret, "")
	if len(secret) < 16 {
		return fmt.Errorf("forward: a secret of at least 16 bytes is required")
	}
	if f.Path != "" && !strings.HasPrefix(f.Path, "/") {
		return fmt.Errorf("forward: path must start with /")
	}
	f.secret = []byte(secret)
	if f.Timeout == 0 {
		f.Timeout = caddy.Duration(defaultForwardTimeout)
	}
	if f.Timeout < caddy.Duration(time.Second) {
		return fmt.Errorf("forward: timeout must be at least 1s")
	}
	return nil
}

const defaultForwardTimeout = time.Minute

// sign returns the signature header value over the given header values.
func (f *Forward) sign(ts string, h http.Header) string {
	mac := hmac.New(sha256.New, f.secret)
	mac.Write([]byte(ts))
	for _, k := range forwardHeaders {
		mac.Write([]byte{'\n'})
		mac.Write([]byte(h.Get(k)))
	}
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// appAnswer is the application's answer to a forwarded completion,
// buffered so that the confirmation can be made durable before the client
// sees it.
type appAnswer struct {
	rec caddyhttp.ResponseRecorder
}

// accepted reports whether the application took the upload (2xx).
func (a appAnswer) accepted() bool {
	s := a.rec.Status()
	return s >= 200 && s < 300
}

// send writes the application's answer to the client.
func (a appAnswer) send() error { return a.rec.WriteResponse() }

// forward hands the verified upload to the next handler and returns its
// answer; whether to confirm is complete's decision.
func (h *Handler) forward(c *call, rec *storage.Record, info storage.ObjectInfo) (appAnswer, error) {
	view := rec.Clone()
	view.Size = info.Size
	// The application gets the same body as a webhook event's data.
	body, err := json.Marshal(webhook.Upload{Record: view, Subject: rec.Internal.Subject})
	if err != nil {
		return appAnswer{}, err
	}
	// The application's answer is read whatever the client does: an upload
	// it accepts must be confirmed (see complete).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx()), time.Duration(h.Forward.Timeout))
	defer cancel()
	fr := c.r.Clone(ctx)
	fr.Method = http.MethodPost
	if h.Forward.Path != "" {
		fr.URL.Path, fr.URL.RawPath, fr.URL.RawQuery = h.Forward.Path, "", ""
		fr.RequestURI = h.Forward.Path
	}
	fr.Body = io.NopCloser(bytes.NewReader(body))
	fr.ContentLength = int64(len(body))
	fr.Header.Set("Content-Type", "application/json")
	fr.Header.Del("Content-Encoding")
	fr.Header.Set("Content-Length", strconv.Itoa(len(body)))
	stripUploadHeaders(fr.Header)
	fr.Header.Set("X-Upload-Id", rec.ID)
	fr.Header.Set("X-Upload-Key", rec.Key)
	fr.Header.Set("X-Upload-Size", strconv.FormatInt(info.Size, 10))
	fr.Header.Set("X-Upload-Type", rec.Type)
	fr.Header.Set("X-Upload-Sha256", rec.SHA256)
	fr.Header.Set("X-Upload-Subject", rec.Internal.Subject)
	fr.Header.Set("X-Upload-Filename", encodeRFC8187(rec.Filename))
	bodySum := sha256.Sum256(body)
	fr.Header.Set("X-Upload-Body-Sha256", hex.EncodeToString(bodySum[:]))
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	fr.Header.Set("X-Upload-Timestamp", ts)
	fr.Header.Set("X-Upload-Signature", h.Forward.sign(ts, fr.Header))

	var buf bytes.Buffer
	rr := caddyhttp.NewResponseRecorder(c.w, &buf, func(int, http.Header) bool { return true })
	if err := c.next.ServeHTTP(rr, fr); err != nil {
		return appAnswer{}, &apiError{Status: http.StatusBadGateway, Code: "forward_failed", Message: "the application did not accept the upload", cause: err}
	}
	if rr.Status() == 0 {
		// Nothing after the upload handler answered: Caddy would send an
		// empty 200 that confirms nothing.
		return appAnswer{}, &apiError{Status: http.StatusBadGateway, Code: "forward_failed", Message: "no application answered the completion",
			cause: fmt.Errorf("forward: no handler after upload answered; put reverse_proxy (or another handler) after upload in the route")}
	}
	if buf.Len() > maxForwardResponse {
		return appAnswer{}, &apiError{Status: http.StatusBadGateway, Code: "forward_failed", Message: "the application's answer is too large"}
	}
	return appAnswer{rec: rr}, nil
}

// rfc8187Chars are RFC 8187's attr-char: what an ext-value keeps as is.
var rfc8187Chars = pct.Alnum("!#$&+-.^_`|~")

// encodeRFC8187 encodes s as an RFC 8187 ext-value: UTF-8”pct-encoded.
func encodeRFC8187(s string) string { return "UTF-8''" + rfc8187Chars.Escape(s) }
