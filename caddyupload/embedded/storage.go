package embedded

import (
	"fmt"
	"net/url"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddyupload/caddyupload"
	"github.com/caddyupload/caddyupload/storage"
	"github.com/caddyupload/caddyupload/storage/s3store"
)

func init() {
	caddy.RegisterModule(Storage{})
}

// Storage is the bucket of the embedded S3-compatible server (module
// `upload.storage.embedded`), the upload handler's default storage in this
// binary. The `embedded_s3` global option configures the server. Presigned
// URLs point at the site the browser is on, so the site must also have the
// `embedded_s3` handler, which passes them to the server.
type Storage struct {
	// PublicOrigin is the scheme and host browsers reach the site at, e.g.
	// https://files.example.com, for when Caddy is behind a proxy that
	// terminates TLS or serves the site under another name: presigned URLs
	// then always point there. The proxy must pass the Host header through
	// unchanged, as the signature covers it. Default: none; each presigned
	// URL takes the scheme and host of the API request that asked for it,
	// as Caddy received it (https only where Caddy terminates TLS).
	PublicOrigin string `json:"public_origin,omitempty"`

	store storage.ObjectStore
}

// CaddyModule returns the Caddy module information.
func (Storage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "upload.storage.embedded",
		New: func() caddy.Module { return new(Storage) },
	}
}

// Provision loads the embedded_s3 app, with its defaults when the config
// does not mention it; Caddy then starts it with the config.
func (s *Storage) Provision(ctx caddy.Context) error {
	appVal, err := ctx.App("embedded_s3")
	if err != nil {
		return fmt.Errorf("embedded storage: %v", err)
	}
	app := appVal.(*App)
	id := "embedded:" + app.Store().Bucket()
	origin := caddy.NewReplacer().ReplaceAll(s.PublicOrigin, "")
	if origin == "" {
		s.store = siteStore{Store: app.Store(), id: id}
		return nil
	}
	if origin, err = parseOrigin(origin); err != nil {
		return fmt.Errorf("embedded storage: public_origin: %v", err)
	}
	st, err := app.storeAt(origin)
	if err != nil {
		return fmt.Errorf("embedded storage: %v", err)
	}
	s.store = publicStore{Store: st, id: id}
	return nil
}

// parseOrigin checks an origin, "scheme://host[:port]", and returns it
// without a trailing slash.
func parseOrigin(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%q: want scheme://host[:port], e.g. https://files.example.com", raw)
	}
	return u.Scheme + "://" + u.Host, nil
}

// ObjectStore implements caddyupload.StorageBackend.
func (s *Storage) ObjectStore() storage.ObjectStore { return s.store }

// UnmarshalCaddyfile sets up the storage. Syntax:
//
//	storage embedded {
//	    public_origin <scheme://host[:port]>
//	}
//
// The block is optional; the server itself is configured by the
// embedded_s3 global option.
func (s *Storage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // module name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "public_origin":
			if !d.NextArg() {
				return d.ArgErr()
			}
			s.PublicOrigin = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("unknown subdirective %q; configure the server with the embedded_s3 global option", d.Val())
		}
	}
	return nil
}

// siteStore is the server's bucket as browsers reach it: through the site
// that serves the upload API, whose scheme and host presigned URLs take.
type siteStore struct {
	*s3store.Store
	id string
}

// ServedBySite tells the upload handler to presign for the request's own
// origin.
func (siteStore) ServedBySite() bool { return true }

// ID is "embedded:<bucket>": stable when the listen address changes, so the
// ledger's records keep pointing at their objects.
func (s siteStore) ID() string { return s.id }

// publicStore is the server's bucket as browsers reach it at a fixed
// public origin: presigned URLs point there whatever the request.
type publicStore struct {
	*s3store.Store
	id string
}

// ID is the same as siteStore's: the origin may change, the objects stay.
func (s publicStore) ID() string { return s.id }

// Interface guards
var (
	_ caddy.Provisioner          = (*Storage)(nil)
	_ caddyfile.Unmarshaler      = (*Storage)(nil)
	_ caddyupload.StorageBackend = (*Storage)(nil)
	_ storage.ObjectStore        = siteStore{}
	_ storage.ObjectStore        = publicStore{}
	_ storage.SiteServed         = siteStore{}
	_ storage.PrefixReader       = siteStore{}
	_ storage.PrefixReader       = publicStore{}
)
