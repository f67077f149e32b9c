// Package caddyupload is a Caddy HTTP handler that gives any web application
// direct-to-object-storage uploads: browsers ask it for a presigned S3
// request with metadata only, send the bytes straight to the bucket, and
// ask it to confirm. It never carries file bytes.
package caddyupload

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddyupload/caddyupload/storage"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults the README and the field docs promise.
const (
	defaultURLTTL             = 60 * time.Second
	defaultPendingTTL         = time.Hour
	defaultKey                = "{uuid}{ext}"
	defaultMaxSize            = 1 << 30 // 1 GiB
	defaultMultipartThreshold = 100 << 20
	defaultRetention          = 7 * 24 * time.Hour
	defaultPartSize           = 16 << 20
	defaultSweepInterval      = time.Minute
	defaultDownloadTTL        = 60 * time.Second
	minPartSize               = 5 << 20 // S3's minimum for every part but the last
	maxParts                  = 10000
	maxSinglePut              = 5 << 30 // S3's limit for one PUT
	maxRequestBody            = 64 << 10
)

// Handler is an upload route: it authenticates the caller, applies the
// route's policy, records each upload in the ledger and hands out presigned
// requests for the object store. Mount it under a path prefix, e.g. with
// `handle_path /uploads/*`; its API paths are relative to that prefix.
type Handler struct {
	// Name identifies the route: every record belongs to the route that
	// created it, and only that route (by name) reads, completes or
	// downloads it; webhook events and logs carry it. Names are unique in a
	// config: two routes with one name are a load error. Keep a route's
	// name when editing its policy, or its pending uploads stay unreachable.
	// Default: the key template's literal prefix without its trailing
	// slash, or "upload".
	Name string `json:"name,omitempty"`

	// Storage is the object-store backend (module namespace
	// `upload.storage`, chosen by "backend"). Default: the embedded
	// S3-compatible server (`embedded`) when the binary includes it.
	StorageRaw json.RawMessage `json:"storage,omitempty" caddy:"namespace=upload.storage inline_key=backend"`

	// Ledger is where upload records are kept (module namespace
	// `upload.ledger`, chosen by "backend"). Default: a bbolt file
	// `upload/ledger.db` under Caddy's data directory, shared by every
	// route that names the same file.
	LedgerRaw json.RawMessage `json:"ledger,omitempty" caddy:"namespace=upload.ledger inline_key=backend"`

	// OIDC verifies the caller's token. Without it, the caller is the user
	// Caddy's own authentication set (`{http.auth.user.id}`, e.g. from
	// basic_auth placed before this handler); no user means 401.
	OIDC *OIDC `json:"oidc,omitempty"`
	// Subject is the placeholder that names the caller when no oidc is
	// configured, e.g. `{http.request.header.Remote-User}` for a header
	// that forward_auth copies from the authentication service (make sure
	// a client cannot send it itself). Default: {http.auth.user.id}.
	Subject string `json:"subject,omitempty"`
	// TrustedOrigins are other origins (scheme://host[:port]) whose pages
	// may change state with the browser's own credentials (cookies, cached
	// basic auth), e.g. https://app.example.com uploading through
	// https://api.example.com. Bearer tokens are not affected. Default:
	// none; only the site's own origin.
	TrustedOrigins []string `json:"trusted_origins,omitempty"`

	// MaxSize is the largest upload in bytes. Default: 1 GiB.
	MaxSize int64 `json:"max_size,omitempty"`
	// MinSize is the smallest upload in bytes. Default: 1.
	MinSize int64 `json:"min_size,omitempty"`
	// Types are the media types allowed, exactly ("image/png") or by
	// wildcard ("image/*"). Default: any type.
	Types []string `json:"types,omitempty"`
	// Key is the template of object keys. Placeholders: {uuid}, {id} (the
	// upload id), {ext} (the file's extension when it agrees with the type,
	// else the type's usual one), {user} (the subject), {claims.NAME},
	// {year}, {month}, {day}. Values from the caller are escaped so they
	// cannot change the key's structure. It must contain {uuid} or {id}.
	// Default: "{uuid}{ext}".
	Key string `json:"key,omitempty"`
	// Method is how single objects are uploaded: "put" (a presigned PUT
	// with signed Content-Length and Content-Type) or "post" (an S3 POST
	// policy form; not on Cloudflare R2). Default: "put".
	Method string `json:"method,omitempty"`
	// URLTTL is how long a presigned request stays valid. Default: 60s.
	URLTTL caddy.Duration `json:"url_ttl,omitempty"`
	// PendingTTL is how long an upload may stay pending before the sweeper
	// deletes its object and marks it expired. Default: 1h.
	PendingTTL caddy.Duration `json:"pending_ttl,omitempty"`
	// MultipartThreshold is the size in bytes above which an upload is
	// multipart, its parts signed on demand. Default: 100 MiB.
	MultipartThreshold int64 `json:"multipart_threshold,omitempty"`
	// PartSize is the part size in bytes of multipart uploads; it grows
	// when a file would need more than 10,000 parts. Default: 16 MiB;
	// minimum 5 MiB.
	PartSize int64 `json:"part_size,omitempty"`
	// SweepInterval is how often abandoned uploads are looked for.
	// Default: 1m.
	SweepInterval caddy.Duration `json:"sweep_interval,omitempty"`
	// Forward hands successful completions to the next handler (the
	// application) with signed headers; see Forward. Default: off, the
	// module answers completions itself.
	Forward *Forward `json:"forward,omitempty"`
	// Download says who may follow GET /{id}/download: "owner",
	// "authenticated" (any caller the route authenticates) or "public"
	// (anyone who has the id). Default: owner.
	Download string `json:"download,omitempty"`
	// DownloadVia picks where downloads are served from: presigned GETs on
	// the bucket (default), CloudFront signed URLs, a public base URL, or
	// signed links served by this route. See DownloadVia.
	DownloadVia *DownloadVia `json:"download_via,omitempty"`
	// DownloadTTL is how long a download redirect stays valid.
	// Default: 60s.
	DownloadTTL caddy.Duration `json:"download_ttl,omitempty"`
	// Webhook announces each upload's outcome (confirmed, rejected,
	// aborted, expired) to the application as a signed POST from the
	// ledger's outbox, retried until accepted; see Webhook. Default: off.
	Webhook *Webhook `json:"webhook,omitempty"`

	// Retention is how long the record of an upload that ended without
	// being confirmed (rejected, aborted, expired) is kept, for GET /{id},
	// the admin API and audits; the sweeper then deletes it. Default: 7d.
	Retention caddy.Duration `json:"retention,omitempty"`
	// RetentionConfirmed is the same for confirmed uploads, counted from
	// the confirmation. Their objects are the application's and stay, but
	// GET /{id} and downloads through this route need the record.
	// Default: 0, kept until purged through the admin API.
	RetentionConfirmed caddy.Duration `json:"retention_confirmed,omitempty"`

	// DisableSweeper turns the in-process sweeper off (e.g. when another
	// instance sharing the ledger runs it). Default: false.
	DisableSweeper bool `json:"disable_sweeper,omitempty"`
	// DisableContentCheck turns off the check, at completion, that the
	// stored bytes are what was declared: the object's first bytes
	// (at most 4 KiB, one ranged GET) are sniffed, and an object whose
	// content contradicts its declared type or the route's Types (an
	// executable or HTML declared image/png) is deleted and its record
	// rejected. Default: false, the check is on: Types is only as strong
	// as the declared type is honest, and the check costs one small read.
	DisableContentCheck bool `json:"disable_content_check,omitempty"`
	// RequireChecksum makes clients declare the SHA-256 of what they send:
	// of the file for a single PUT (create's sha256), of each part when they
	// sign parts of a multipart upload. Each is signed into its URL, so
	// storage itself refuses bytes that differ, including a part cut off
	// mid-body. Needs method put: POST policy forms carry no checksum.
	// Stock Uppy sends none, so its uploads are refused on such a route.
	// Default: false, checksums are optional and verified when declared.
	RequireChecksum bool `json:"require_checksum,omitempty"`
	// MaxImageWidth is the widest image, in pixels, the route confirms;
	// dimensions are read from the image's header at completion. Limits
	// apply to PNG, JPEG and GIF; an image of another format is rejected
	// on a route that sets any limit. Default: 0, no limit.
	MaxImageWidth int64 `json:"max_image_width,omitempty"`
	// MaxImageHeight is the tallest image, in pixels, the route confirms.
	// Default: 0, no limit.
	MaxImageHeight int64 `json:"max_image_height,omitempty"`
	// MaxImagePixels limits width × height, the memory a decoder needs
	// (a small file can declare a huge image). Default: 0, no limit.
	MaxImagePixels int64 `json:"max_image_pixels,omitempty"`
	// Quota limits what each subject may do on this route: uploads and
	// bytes pending at once, confirmed uploads and bytes in total or per
	// window, and the rate of creates; see Quota. Default: no limits.
	Quota *Quota `json:"quota,omitempty"`

	store  storage.ObjectStore
	ledger storage.Ledger
	// via is DownloadVia, provisioned (presigned when not configured).
	via *DownloadVia
	// quotas is ledger's usage side (nil if it keeps none); limits is
	// Quota as it applies them.
	quotas storage.QuotaLedger
	limits storage.Limits
	// completing serializes the completions of one record.
	completing *recordLocks
	// orphansSeen dates the orphan scan's candidates by this clock.
	orphansSeen *sightings
	auth        authenticator
	keys        keyTemplate
	types       typeMatcher
	logger      *zap.Logger
	metrics     *routeMetrics
	// releaseHealth ends the route's listing on the health endpoint.
	releaseHealth func()
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.upload",
		New: func() caddy.Module { return new(Handler) },
	}
}

// StorageBackend is implemented by modules in the upload.storage namespace.
type StorageBackend interface {
	ObjectStore() storage.ObjectStore
}

// LedgerBackend is implemented by modules in the upload.ledger namespace.
type LedgerBackend interface {
	Ledger() storage.Ledger
}

// Provision sets up the handler.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.setDefaults()
	// Validate before anything is started: the sweeper must not run for a
	// config that is about to be refused.
	if err := h.Validate(); err != nil {
		return err
	}

	var err error
	if h.keys, err = parseKeyTemplate(h.Key); err != nil {
		return err
	}
	if h.Name == "" {
		h.Name = strings.TrimSuffix(h.keys.prefix, "/")
		if h.Name == "" {
			h.Name = "upload"
		}
	}
	if err := claimRouteName(ctx, h.Name); err != nil {
		return err
	}
	h.types = newTypeMatcher(h.Types)
	if h.metrics, err = newRouteMetrics(ctx, h.Name); err != nil {
		return fmt.Errorf("metrics: %v", err)
	}

	var mod any
	if h.StorageRaw != nil {
		mod, err = ctx.LoadModule(h, "StorageRaw")
	} else {
		mod, err = ctx.LoadModuleByID("upload.storage.embedded", json.RawMessage("{}"))
		if err != nil {
			err = fmt.Errorf("no storage configured and no embedded server in this build (%v): configure an s3 storage", err)
		}
	}
	if err != nil {
		return fmt.Errorf("loading storage: %v", err)
	}
	sb, ok := mod.(StorageBackend)
	if !ok {
		return fmt.Errorf("storage module %T is not a StorageBackend", mod)
	}
	h.store = instrumentStore(sb.ObjectStore(), h.Name)
	if err := h.provisionContentCheck(); err != nil {
		return err
	}

	if h.LedgerRaw != nil {
		mod, err = ctx.LoadModule(h, "LedgerRaw")
	} else {
		mod, err = ctx.LoadModuleByID("upload.ledger.bolt", json.RawMessage("{}"))
	}
	if err != nil {
		return fmt.Errorf("loading ledger: %v", err)
	}
	lb, ok := mod.(LedgerBackend)
	if !ok {
		return fmt.Errorf("ledger module %T is not a LedgerBackend", mod)
	}
	h.ledger = lb.Ledger()
	if err := h.provisionQuota(); err != nil {
		return err
	}
	h.completing = new(recordLocks)
	h.orphansSeen = new(sightings)

	h.via = h.DownloadVia
	if h.via == nil {
		h.via = new(DownloadVia)
	}
	if err := h.via.provision(h.Download); err != nil {
		return err
	}

	if h.Forward != nil {
		if err := h.Forward.provision(); err != nil {
			return err
		}
	}
	if h.auth, err = h.newAuthenticator(ctx); err != nil {
		return err
	}
	if h.Method == "post" && !h.store.SupportsPost() {
		return fmt.Errorf("method post: this storage backend does not accept POST policy uploads; use put")
	}
	if err := h.provisionWebhook(ctx); err != nil {
		return err
	}
	h.releaseHealth = registerHealth(h)
	if !h.DisableSweeper {
		go h.runSweeper(ctx)
	}
	return nil
}

func (h *Handler) setDefaults() {
	if h.Key == "" {
		h.Key = defaultKey
	}
	if h.MaxSize == 0 {
		h.MaxSize = defaultMaxSize
	}
	if h.MinSize == 0 {
		h.MinSize = 1
	}
	if h.Method == "" {
		h.Method = "put"
	}
	if h.URLTTL == 0 {
		h.URLTTL = caddy.Duration(defaultURLTTL)
	}
	if h.PendingTTL == 0 {
		h.PendingTTL = caddy.Duration(defaultPendingTTL)
	}
	if h.MultipartThreshold == 0 {
		h.MultipartThreshold = defaultMultipartThreshold
	}
	if h.PartSize == 0 {
		h.PartSize = defaultPartSize
	}
	if h.Download == "" {
		h.Download = "owner"
	}
	if h.Subject == "" {
		h.Subject = defaultSubject
	}
	if h.DownloadTTL == 0 {
		h.DownloadTTL = caddy.Duration(defaultDownloadTTL)
	}
	if h.Retention == 0 {
		h.Retention = caddy.Duration(defaultRetention)
	}
	if h.SweepInterval == 0 {
		h.SweepInterval = caddy.Duration(defaultSweepInterval)
	}
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	switch {
	case h.MinSize < 1:
		return fmt.Errorf("min_size must be at least 1 byte")
	case h.MaxSize < h.MinSize:
		return fmt.Errorf("max_size (%d) is below min_size (%d)", h.MaxSize, h.MinSize)
	case h.Method != "put" && h.Method != "post":
		return fmt.Errorf("method must be put or post, not %q", h.Method)
	case h.RequireChecksum && h.Method == "post":
		return fmt.Errorf("require_checksum needs method put: POST policy forms cannot carry a checksum")
	case time.Duration(h.URLTTL) < time.Second || time.Duration(h.URLTTL) > 7*24*time.Hour:
		return fmt.Errorf("url_ttl must be between 1s and 7 days (SigV4's limit)")
	case h.PendingTTL < h.URLTTL:
		return fmt.Errorf("pending_ttl (%s) must not be shorter than url_ttl (%s)", time.Duration(h.PendingTTL), time.Duration(h.URLTTL))
	case h.PartSize < minPartSize:
		return fmt.Errorf("part_size must be at least 5MiB (S3's minimum)")
	case h.MultipartThreshold < minPartSize:
		return fmt.Errorf("multipart_threshold must be at least 5MiB")
	case h.MultipartThreshold > maxSinglePut:
		return fmt.Errorf("multipart_threshold must not exceed 5GiB (S3's single PUT limit)")
	case h.Download != "owner" && h.Download != "authenticated" && h.Download != "public":
		return fmt.Errorf("download must be owner, authenticated or public, not %q", h.Download)
	case time.Duration(h.DownloadTTL) < time.Second || time.Duration(h.DownloadTTL) > 7*24*time.Hour:
		return fmt.Errorf("download_ttl must be between 1s and 7 days")
	case time.Duration(h.SweepInterval) < time.Second:
		return fmt.Errorf("sweep_interval must be at least 1s")
	case h.Retention < 0 || h.RetentionConfirmed < 0:
		return fmt.Errorf("retention and retention_confirmed must not be negative")
	}
	for _, t := range h.Types {
		if !validTypePattern(t) {
			return fmt.Errorf("types: %q is not a media type or type/* pattern", t)
		}
	}
	for i, o := range h.TrustedOrigins {
		n, err := normalizeOrigin(o)
		if err != nil {
			return fmt.Errorf("trusted_origins: %v", err)
		}
		h.TrustedOrigins[i] = n
	}
	if err := h.validateContentCheck(); err != nil {
		return err
	}
	if h.Quota != nil {
		if err := h.Quota.validate(); err != nil {
			return err
		}
	}
	if !strings.HasPrefix(h.Subject, "{") || !strings.HasSuffix(h.Subject, "}") {
		return fmt.Errorf("subject must be one placeholder, such as {http.auth.user.id}, not %q", h.Subject)
	}
	return nil
}

// Cleanup releases what Provision acquired; the storage and ledger modules
// release their own resources when the config's context ends.
func (h *Handler) Cleanup() error {
	if h.releaseHealth != nil {
		h.releaseHealth()
	}
	if h.auth != nil {
		h.auth.release()
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
