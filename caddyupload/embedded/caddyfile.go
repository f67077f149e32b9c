package embedded

import (
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("embedded_s3", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("embedded_s3", parseHandler)
	// Before any rewrite (an SPA's try_files would send uploads to
	// index.html) and before authentication (the signature is the
	// authorization; a site-wide basic_auth would refuse the browser's PUT).
	httpcaddyfile.RegisterDirectiveOrder("embedded_s3", httpcaddyfile.Before, "redir")
}

// parseGlobalOption sets up the embedded_s3 app from the global option of
// the same name; see App.UnmarshalCaddyfile.
func parseGlobalOption(d *caddyfile.Dispenser, _ any) (any, error) {
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "embedded_s3", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from the global option. Syntax:
//
//	embedded_s3 {
//	    listen             <host:port>
//	    data_dir           <dir>
//	    bucket             <name>
//	    region             <region>
//	    access_key_id      <key>
//	    secret_access_key  <secret>
//	}
//
// Every subdirective is optional; credentials belong in {env.*}
// placeholders.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var dst *string
		switch d.Val() {
		case "listen":
			dst = &a.Listen
		case "data_dir":
			dst = &a.DataDir
		case "bucket":
			dst = &a.Bucket
		case "region":
			dst = &a.Region
		case "access_key_id":
			dst = &a.AccessKeyID
		case "secret_access_key":
			dst = &a.SecretAccessKey
		default:
			return d.Errf("unknown subdirective %q", d.Val())
		}
		if !d.NextArg() {
			return d.ArgErr()
		}
		*dst = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	return nil
}

func parseHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler. Syntax:
//
//	embedded_s3 [<matcher>]
//
// Put it in every site whose upload routes use the embedded server; the
// server itself is configured by the global option of the same name.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Err("the embedded_s3 directive has no options; configure the server with the embedded_s3 global option")
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Handler)(nil)
)
