package embedded

import (
	"fmt"

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
// binary. It has no settings of its own: the `embedded_s3` global option
// configures the server. Presigned URLs point at the site the browser is
// on, so the site must also have the `embedded_s3` handler, which passes
// them to the server.
type Storage struct {
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
	s.store = siteStore{Store: app.Store(), id: "embedded:" + app.Store().Bucket()}
	return nil
}

// ObjectStore implements caddyupload.StorageBackend.
func (s *Storage) ObjectStore() storage.ObjectStore { return s.store }

// UnmarshalCaddyfile accepts `storage embedded` with no options.
func (s *Storage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // module name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Err("embedded storage has no options; configure the server with the embedded_s3 global option")
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

// Interface guards
var (
	_ caddy.Provisioner                = (*Storage)(nil)
	_ caddyfile.Unmarshaler            = (*Storage)(nil)
	_ caddyupload.StorageBackend       = (*Storage)(nil)
	_ storage.ObjectStore              = siteStore{}
	_ interface{ ServedBySite() bool } = siteStore{}
)
