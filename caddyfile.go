package caddyupload

import (
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("upload", parseCaddyfile)
	// After authentication handlers, before the app it hands off to.
	httpcaddyfile.RegisterDirectiveOrder("upload", httpcaddyfile.Before, "reverse_proxy")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	u := new(Handler)
	err := u.UnmarshalCaddyfile(h.Dispenser)
	return u, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	upload [<matcher>] {
//	    name                 <name>
//	    s3 {
//	        bucket             <bucket>
//	        region             <region>
//	        endpoint           <url>
//	        public_endpoint    <url>
//	        access_key_id      <key>
//	        secret_access_key  <secret>
//	        session_token      <token>
//	        path_style         [on|off]
//	        disable_post
//	    }
//	    storage <backend> { ... }
//	    ledger               <path>
//	    ledger postgres {
//	        dsn       <dsn>
//	        schema    <name>
//	        max_conns <n>
//	    }
//	    oidc {
//	        issuer         <url>
//	        discovery_url  <url>
//	        audience       <aud...>
//	        algorithms     <alg...>
//	        leeway         <duration>
//	        subject_claim  <claim>
//	        cookie         <name>
//	        disable_header
//	        require        <claim> <value...>
//	    }
//	    subject              <placeholder>
//	    trusted_origins      <origin...>
//	    max_size             <size>
//	    min_size             <size>
//	    types                <type...>
//	    content_check        on|off
//	    require_checksum
//	    max_image_width      <pixels>
//	    max_image_height     <pixels>
//	    max_image_pixels     <pixels>
//	    key                  <template>
//	    method               put|post
//	    url_ttl              <duration>
//	    pending_ttl          <duration>
//	    multipart_threshold  <size>
//	    part_size            <size>
//	    sweep_interval       <duration>
//	    retention            <duration>
//	    retention_confirmed  <duration>
//	    sweeper              off
//	    download_via presigned|cloudfront|public|link [<url>] {
//	        key_pair_id <id>
//	        private_key <pem>
//	        policy      canned|custom
//	        secret      <secret>
//	        inline      <type...>
//	    }
//	    forward [<path>] {
//	        timeout <duration>
//	        secret <secret>
//	    }
//	    download             owner|authenticated|public
//	    download_ttl         <duration>
//	    quota {
//	        pending        <n>
//	        pending_bytes  <size>
//	        uploads        <n> [per <duration>]
//	        bytes          <size> [per <duration>]
//	        rate           <n>/<duration> [burst <n>]
//	    }
//	    webhook <url> {
//	        secret        <secret>
//	        timeout       <duration>
//	        max_attempts  <n>
//	        max_backoff   <duration>
//	        concurrency   <n>
//	    }
//	}
//
// Without s3 or storage, uploads go to the embedded server. Sizes accept
// units (5MiB, 1GB); durations Caddy's (60s, 1h, 2d).
func (u *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "name":
			err = oneArg(d, &u.Name)
		case "s3":
			var s S3Storage
			if err = s.UnmarshalCaddyfile(d); err == nil {
				u.StorageRaw = caddyconfig.JSONModuleObject(s, "backend", "s3", nil)
			}
		case "storage":
			if !d.NextArg() {
				return d.ArgErr()
			}
			name := d.Val()
			mod, err := caddyfile.UnmarshalModule(d, "upload.storage."+name)
			if err != nil {
				return err
			}
			u.StorageRaw = caddyconfig.JSONModuleObject(mod, "backend", name, nil)
		case "ledger":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if d.Val() == "postgres" {
				var pl *PostgresLedger
				if pl, err = parsePostgresLedger(d); err == nil {
					u.LedgerRaw = caddyconfig.JSONModuleObject(pl, "backend", "postgres", nil)
				}
				break
			}
			path := d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			u.LedgerRaw = caddyconfig.JSONModuleObject(BoltLedger{Path: path}, "backend", "bolt", nil)
		case "oidc":
			u.OIDC = new(OIDC)
			err = u.OIDC.unmarshalCaddyfile(d)
		case "subject":
			err = oneArg(d, &u.Subject)
		case "trusted_origins":
			u.TrustedOrigins = append(u.TrustedOrigins, d.RemainingArgs()...)
			if len(u.TrustedOrigins) == 0 {
				return d.ArgErr()
			}
		case "content_check":
			var v string
			if err = oneArg(d, &v); err == nil {
				switch v {
				case "on":
					u.DisableContentCheck = false
				case "off":
					u.DisableContentCheck = true
				default:
					return d.Errf("content_check: expected on or off, got %q", v)
				}
			}
		case "require_checksum":
			if d.NextArg() {
				return d.ArgErr()
			}
			u.RequireChecksum = true
		case "max_image_width":
			err = pixelsArg(d, &u.MaxImageWidth)
		case "max_image_height":
			err = pixelsArg(d, &u.MaxImageHeight)
		case "max_image_pixels":
			err = pixelsArg(d, &u.MaxImagePixels)
		case "max_size":
			err = sizeArg(d, &u.MaxSize)
		case "min_size":
			err = sizeArg(d, &u.MinSize)
		case "types":
			u.Types = append(u.Types, d.RemainingArgs()...)
			if len(u.Types) == 0 {
				return d.ArgErr()
			}
		case "key":
			if err = oneArg(d, &u.Key); err == nil {
				// The Caddyfile rewrites the {uuid} shorthand before we see it.
				u.Key = strings.ReplaceAll(u.Key, "{http.request.uuid}", "{uuid}")
			}
		case "method":
			err = oneArg(d, &u.Method)
		case "url_ttl":
			err = durationArg(d, &u.URLTTL)
		case "pending_ttl":
			err = durationArg(d, &u.PendingTTL)
		case "multipart_threshold":
			err = sizeArg(d, &u.MultipartThreshold)
		case "part_size":
			err = sizeArg(d, &u.PartSize)
		case "sweep_interval":
			err = durationArg(d, &u.SweepInterval)
		case "retention":
			err = durationArg(d, &u.Retention)
		case "retention_confirmed":
			err = durationArg(d, &u.RetentionConfirmed)
		case "forward":
			u.Forward = new(Forward)
			if d.NextArg() {
				u.Forward.Path = d.Val()
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				switch d.Val() {
				case "secret":
					if err := oneArg(d, &u.Forward.Secret); err != nil {
						return err
					}
				case "timeout":
					if err := durationArg(d, &u.Forward.Timeout); err != nil {
						return err
					}
				default:
					return d.Errf("unknown forward subdirective %q", d.Val())
				}
			}
			if u.Forward.Secret == "" {
				return d.Err("forward: secret is required")
			}
		case "webhook":
			u.Webhook, err = parseWebhook(d)
		case "quota":
			u.Quota = new(Quota)
			err = u.Quota.unmarshalCaddyfile(d)
		case "download":
			err = oneArg(d, &u.Download)
		case "download_via":
			u.DownloadVia, err = parseDownloadVia(d)
		case "download_ttl":
			err = durationArg(d, &u.DownloadTTL)
		case "sweeper":
			var v string
			if err = oneArg(d, &v); err == nil {
				switch v {
				case "off":
					u.DisableSweeper = true
				case "on":
					u.DisableSweeper = false
				default:
					return d.Errf("sweeper: expected on or off, got %q", v)
				}
			}
		default:
			return d.Errf("unknown subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// UnmarshalCaddyfile parses an s3 block; the directive name is the
// current token.
func (s *S3Storage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "bucket":
			err = oneArg(d, &s.Bucket)
		case "region":
			err = oneArg(d, &s.Region)
		case "endpoint":
			err = oneArg(d, &s.Endpoint)
		case "public_endpoint":
			err = oneArg(d, &s.PublicEndpoint)
		case "access_key_id":
			err = oneArg(d, &s.AccessKeyID)
		case "secret_access_key":
			err = oneArg(d, &s.SecretAccessKey)
		case "session_token":
			err = oneArg(d, &s.SessionToken)
		case "path_style":
			on := true
			if d.NextArg() {
				switch d.Val() {
				case "on":
				case "off":
					on = false
				default:
					return d.Errf("path_style: expected on or off, got %q", d.Val())
				}
			}
			s.PathStyle = &on
		case "disable_post":
			s.DisablePost = true
		default:
			return d.Errf("unknown s3 subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	if s.Bucket == "" {
		return d.Err("s3: bucket is required")
	}
	return nil
}

func (o *OIDC) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "issuer":
			err = oneArg(d, &o.Issuer)
		case "discovery_url":
			err = oneArg(d, &o.DiscoveryURL)
		case "audience", "audiences":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			o.Audiences = append(o.Audiences, args...)
		case "algorithms":
			o.Algorithms = d.RemainingArgs()
			if len(o.Algorithms) == 0 {
				return d.ArgErr()
			}
		case "leeway":
			err = durationArg(d, &o.Leeway)
		case "subject_claim":
			err = oneArg(d, &o.SubjectClaim)
		case "cookie":
			err = oneArg(d, &o.Cookie)
		case "disable_header":
			o.DisableHeader = true
		case "require":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.Err("require: expected a claim and at least one value")
			}
			o.Require = append(o.Require, ClaimRule{Claim: args[0], Values: args[1:]})
		default:
			return d.Errf("unknown oidc subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	if o.Issuer == "" {
		return d.Err("oidc: issuer is required")
	}
	if len(o.Audiences) == 0 {
		return d.Err("oidc: audience is required")
	}
	return nil
}

func oneArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func sizeArg(d *caddyfile.Dispenser, dst *int64) error {
	name := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	n, err := humanize.ParseBytes(s)
	if err != nil || n == 0 || n > 1<<50 {
		return d.Errf("%s: invalid size %q", name, s)
	}
	*dst = int64(n)
	return nil
}

func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	name := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil || dur <= 0 {
		return d.Errf("%s: invalid duration %q", name, s)
	}
	*dst = caddy.Duration(dur)
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Handler)(nil)
)

// parseDownloadVia reads `download_via <mode> [<url>] { ... }`.
func parseDownloadVia(d *caddyfile.Dispenser) (*DownloadVia, error) {
	v := new(DownloadVia)
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	v.Mode = d.Val()
	if d.NextArg() {
		v.URL = d.Val()
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "key_pair_id":
			err = oneArg(d, &v.KeyPairID)
		case "private_key":
			err = oneArg(d, &v.PrivateKey)
		case "policy":
			err = oneArg(d, &v.Policy)
		case "secret":
			err = oneArg(d, &v.Secret)
		case "inline":
			v.Inline = append(v.Inline, d.RemainingArgs()...)
			if len(v.Inline) == 0 {
				err = d.ArgErr()
			}
		default:
			err = d.Errf("unknown download_via subdirective %q", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return v, nil
}
