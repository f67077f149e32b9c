package caddyupload

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"
	"go.uber.org/zap"

	"github.com/caddyupload/caddyupload/storage"
)

// Quota limits what each subject (a user of one identity source) may do on
// a route. Limits are checked when an upload is created, in the same ledger
// transaction that writes its record, so that concurrent requests, from
// this Caddy or another sharing a PostgreSQL ledger, never overshoot them;
// a refused create answers 429 quota_exceeded before any URL is handed
// out. Counters live in the ledger and survive restarts and reloads.
// Uploads created without a size (Uppy) count the route's max_size until
// they are confirmed with their real size.
type Quota struct {
	// Pending is the most uploads a subject may have pending (created,
	// neither confirmed nor ended) at once. Default: 0, no limit.
	Pending int64 `json:"pending,omitempty"`
	// PendingBytes is the most bytes a subject's pending uploads may
	// declare at once. Default: 0, no limit.
	PendingBytes int64 `json:"pending_bytes,omitempty"`
	// Uploads bounds a subject's confirmed uploads, in total or per window;
	// pending ones count too, since each may still be confirmed. Default:
	// no limit.
	Uploads *QuotaAmount `json:"uploads,omitempty"`
	// Bytes bounds a subject's confirmed bytes, in total or per window;
	// pending uploads count with their declared size. Default: no limit.
	Bytes *QuotaAmount `json:"bytes,omitempty"`
	// Rate bounds how fast a subject creates uploads (token bucket).
	// Default: no limit.
	Rate *QuotaRate `json:"rate,omitempty"`
}

// QuotaAmount is a count or a number of bytes, in total or per window.
type QuotaAmount struct {
	// Max is the limit. Required.
	Max int64 `json:"max"`
	// Window is a sliding window (e.g. 24h) the limit holds in. Default:
	// 0, in total.
	Window caddy.Duration `json:"window,omitempty"`
}

// QuotaRate is a token bucket of creates, named as caddy-ratelimit names
// its rates.
type QuotaRate struct {
	// Events creates per Window refill the bucket. Required.
	Events int64 `json:"events"`
	// Window is the refill period. Required.
	Window caddy.Duration `json:"window"`
	// Burst is the bucket's size: how many creates may come at once after
	// a quiet time. Default: Events.
	Burst int64 `json:"burst,omitempty"`
}

// limits is q as the ledger applies it.
func (q *Quota) limits() storage.Limits {
	if q == nil {
		return storage.Limits{}
	}
	l := storage.Limits{Pending: q.Pending, PendingBytes: q.PendingBytes}
	if q.Uploads != nil {
		l.Uploads, l.UploadsWindow = q.Uploads.Max, time.Duration(q.Uploads.Window)
	}
	if q.Bytes != nil {
		l.Bytes, l.BytesWindow = q.Bytes.Max, time.Duration(q.Bytes.Window)
	}
	if q.Rate != nil {
		l.Rate, l.RateWindow, l.Burst = q.Rate.Events, time.Duration(q.Rate.Window), q.Rate.Burst
	}
	return l
}

// validate checks q for Handler.Validate.
func (q *Quota) validate() error {
	switch {
	case q.Uploads != nil && q.Uploads.Max <= 0:
		return errors.New("quota: uploads needs a positive number")
	case q.Bytes != nil && q.Bytes.Max <= 0:
		return errors.New("quota: bytes needs a positive size")
	case q.Rate != nil && (q.Rate.Events <= 0 || q.Rate.Window <= 0):
		return errors.New("quota: rate needs a positive number of events and a window")
	case q.Rate != nil && q.Rate.Burst < 0:
		return errors.New("quota: burst must not be negative")
	case q.limits().IsZero():
		return errors.New("quota: no limit is set")
	}
	if err := q.limits().Check(); err != nil {
		return fmt.Errorf("quota: %v", err)
	}
	return nil
}

// provisionQuota binds the route's quota to its ledger, which must keep
// usage (both built-in ledgers do).
func (h *Handler) provisionQuota() error {
	h.quotas, _ = h.ledger.(storage.QuotaLedger)
	if h.Quota == nil {
		return nil
	}
	if h.quotas == nil {
		return fmt.Errorf("quota: ledger %T keeps no usage counters", h.ledger)
	}
	h.limits = h.Quota.limits()
	var names []string
	for _, n := range []struct {
		on   bool
		name string
	}{
		{h.limits.Pending > 0, storage.LimitPending}, {h.limits.PendingBytes > 0, storage.LimitPendingBytes},
		{h.limits.Uploads > 0, storage.LimitUploads}, {h.limits.Bytes > 0, storage.LimitBytes}, {h.limits.Rate > 0, storage.LimitRate},
	} {
		if n.on {
			names = append(names, n.name)
		}
	}
	h.metrics.quotaLimits(names...)
	for _, b := range []struct {
		name string
		max  int64
	}{{storage.LimitPendingBytes, h.limits.PendingBytes}, {storage.LimitBytes, h.limits.Bytes}} {
		if b.max > 0 && b.max < h.MaxSize {
			// Not an error: a route whose clients always declare sizes
			// never meets it.
			h.logger.Warn("uploads created without a size (Uppy) count max_size and will be refused: the quota is below it",
				zap.String("route", h.Name), zap.String("limit", b.name), zap.Int64("quota", b.max), zap.Int64("max_size", h.MaxSize))
		}
	}
	return nil
}

// createRecord writes rec, the pending record of a new upload, checking the
// route's quota in the same transaction.
func (h *Handler) createRecord(ctx context.Context, rec *storage.Record) error {
	if h.Quota == nil {
		return h.ledger.Create(ctx, rec)
	}
	return h.quotas.CreateWithin(ctx, rec, h.limits)
}

// precheckQuota refuses an upload that would not fit the quota as it
// stands, before the storage call a multipart upload makes first. The
// check that counts is the one made with the record write.
func (h *Handler) precheckQuota(ctx context.Context, rec *storage.Record) error {
	if h.Quota == nil {
		return nil
	}
	u, err := h.quotas.Usage(ctx, storage.QuotaKeyOf(rec))
	if err != nil {
		return errLedger(err)
	}
	if err := u.Admit(rec, h.limits, rec.CreatedAt); err != nil {
		return h.quotaAnswer(err)
	}
	return nil
}

// quotaAnswer turns a refusal by the quota into the client's 429 and
// counts it; any other error is returned as it is.
func (h *Handler) quotaAnswer(err error) error {
	var qe *storage.QuotaError
	if !errors.As(err, &qe) {
		return err
	}
	h.metrics.quotaRefused(qe.Limit)
	return errQuota(qe, h.MaxSize)
}

// errQuota is the 429 of a refusal: a message naming the limit, and
// Retry-After when waiting is enough for the create to fit.
func errQuota(e *storage.QuotaError, maxSize int64) *apiError {
	var msg string
	per := " in all"
	if e.Window > 0 {
		per = " per " + shortDuration(e.Window)
	}
	switch e.Limit {
	case storage.LimitPending:
		msg = fmt.Sprintf("at most %d uploads may be pending at once; complete or abort one first", e.Max)
	case storage.LimitPendingBytes:
		msg = fmt.Sprintf("pending uploads may declare at most %s at once; %s are pending and this upload counts %s",
			humanize.IBytes(uint64(e.Max)), humanize.IBytes(uint64(e.Used)), humanize.IBytes(uint64(e.Need)))
	case storage.LimitUploads:
		msg = fmt.Sprintf("at most %d uploads%s; %d are confirmed or pending", e.Max, per, e.Used)
	case storage.LimitBytes:
		msg = fmt.Sprintf("at most %s of uploads%s; %s are confirmed or pending and this upload counts %s",
			humanize.IBytes(uint64(e.Max)), per, humanize.IBytes(uint64(e.Used)), humanize.IBytes(uint64(e.Need)))
	case storage.LimitRate:
		msg = fmt.Sprintf("at most %d uploads per %s", e.Max, shortDuration(e.Window))
		if e.Burst > 0 && e.Burst != e.Max {
			msg += fmt.Sprintf(" (bursts of %d)", e.Burst)
		}
	default:
		msg = "a limit of this route"
	}
	if e.Need > 0 && e.Need == maxSize && (e.Limit == storage.LimitPendingBytes || e.Limit == storage.LimitBytes) {
		msg += " (an upload without a declared size counts the route's max_size)"
	}
	ae := &apiError{Status: http.StatusTooManyRequests, Code: "quota_exceeded", Message: "quota exceeded (" + e.Limit + "): " + msg, cause: e}
	if e.RetryAfter > 0 {
		ae.RetryAfter = int((e.RetryAfter + time.Second - 1) / time.Second)
		ae.Message += fmt.Sprintf("; try again in %s", shortDuration(time.Duration(ae.RetryAfter)*time.Second))
	}
	return ae
}

// shortDuration writes d as Caddy's config does: 24h, 1m, 1h30m, 90s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// unmarshalCaddyfile parses a quota block; the directive name is the
// current token.
//
//	quota {
//	    pending        <n>
//	    pending_bytes  <size>
//	    uploads        <n> [per <duration>]
//	    bytes          <size> [per <duration>]
//	    rate           <n>/<duration> [burst <n>]
//	}
func (q *Quota) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		args := d.RemainingArgs()
		var err error
		switch name {
		case "pending":
			if len(args) != 1 {
				return d.ArgErr()
			}
			q.Pending, err = positiveArg(args[0])
		case "pending_bytes":
			if len(args) != 1 {
				return d.ArgErr()
			}
			q.PendingBytes, err = sizeValue(args[0])
		case "uploads", "bytes":
			var a *QuotaAmount
			if a, err = amountArgs(name, args); err == nil {
				if name == "uploads" {
					q.Uploads = a
				} else {
					q.Bytes = a
				}
			}
		case "rate":
			q.Rate, err = rateArgs(args)
		default:
			return d.Errf("unknown quota subdirective %q", name)
		}
		if err != nil {
			return d.Errf("quota %s: %v", name, err)
		}
	}
	return nil
}

// amountArgs parses `<n> [per <duration>]`; sizes for bytes.
func amountArgs(name string, args []string) (*QuotaAmount, error) {
	if len(args) != 1 && (len(args) != 3 || args[1] != "per") {
		return nil, fmt.Errorf("want <%s> [per <duration>]", map[string]string{"uploads": "n", "bytes": "size"}[name])
	}
	var a QuotaAmount
	var err error
	if name == "bytes" {
		a.Max, err = sizeValue(args[0])
	} else {
		a.Max, err = positiveArg(args[0])
	}
	if err != nil {
		return nil, err
	}
	if len(args) == 3 {
		if a.Window, err = windowArg(args[2]); err != nil {
			return nil, err
		}
	}
	return &a, nil
}

// rateArgs parses `<n>/<duration> [burst <n>]`.
func rateArgs(args []string) (*QuotaRate, error) {
	if len(args) != 1 && (len(args) != 3 || args[1] != "burst") {
		return nil, errors.New("want <n>/<duration> [burst <n>]")
	}
	n, w, ok := strings.Cut(args[0], "/")
	if !ok {
		return nil, fmt.Errorf("%q: want <n>/<duration>, e.g. 10/1m", args[0])
	}
	var r QuotaRate
	var err error
	if r.Events, err = positiveArg(n); err != nil {
		return nil, err
	}
	if r.Window, err = windowArg(w); err != nil {
		return nil, err
	}
	if len(args) == 3 {
		if r.Burst, err = positiveArg(args[2]); err != nil {
			return nil, err
		}
	}
	return &r, nil
}

func positiveArg(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a positive number", s)
	}
	return n, nil
}

func sizeValue(s string) (int64, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil || n == 0 || n > 1<<62 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return int64(n), nil
}

func windowArg(s string) (caddy.Duration, error) {
	d, err := caddy.ParseDuration(s)
	if err != nil || d < time.Second {
		return 0, fmt.Errorf("invalid window %q (at least 1s)", s)
	}
	return caddy.Duration(d), nil
}
