package caddyupload

import (
	"context"
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddyupload/caddyupload/storage"
	"github.com/caddyupload/caddyupload/storage/s3store"
)

func init() {
	caddy.RegisterModule(S3Storage{})
}

// S3Storage is a bucket on AWS S3, Cloudflare R2 or any S3-compatible
// server. Credentials belong in `{env.*}` placeholders: they are resolved
// when the config loads and never appear in the adapted JSON.
type S3Storage struct {
	// Bucket is the bucket name. Required.
	Bucket string `json:"bucket"`
	// Region is the bucket's region; "auto" for Cloudflare R2.
	// Default: us-east-1.
	Region string `json:"region,omitempty"`
	// Endpoint is the S3 API URL the module calls, e.g.
	// https://ACCOUNT.r2.cloudflarestorage.com. Default: AWS.
	Endpoint string `json:"endpoint,omitempty"`
	// PublicEndpoint is the base URL browsers use in presigned URLs, when
	// it differs from Endpoint. Default: Endpoint.
	PublicEndpoint string `json:"public_endpoint,omitempty"`
	// AccessKeyID is the access key, e.g. {env.S3_ACCESS_KEY_ID}.
	AccessKeyID string `json:"access_key_id,omitempty"`
	// SecretAccessKey is the secret key, e.g. {env.S3_SECRET_ACCESS_KEY}.
	SecretAccessKey string `json:"secret_access_key,omitempty"`
	// SessionToken is an optional temporary session token.
	SessionToken string `json:"session_token,omitempty"`
	// PathStyle addresses the bucket as ENDPOINT/BUCKET instead of
	// BUCKET.ENDPOINT. Default: on when Endpoint is set, off for AWS.
	PathStyle *bool `json:"path_style,omitempty"`
	// DisablePost declares that the server does not accept POST policy
	// uploads (Cloudflare R2). Default: false.
	DisablePost bool `json:"disable_post,omitempty"`

	store *s3store.Store
}

// CaddyModule returns the Caddy module information.
func (S3Storage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "upload.storage.s3",
		New: func() caddy.Module { return new(S3Storage) },
	}
}

// Provision resolves placeholders and builds the client; it makes no
// network call, so Caddy starts while the bucket is unreachable.
func (s *S3Storage) Provision(ctx caddy.Context) error {
	repl := caddy.NewReplacer()
	for _, secret := range []string{s.AccessKeyID, s.SecretAccessKey, s.SessionToken} {
		if secret != "" && !strings.Contains(secret, "{") {
			ctx.Logger().Warn("an S3 credential is written into the config; use an {env.*} placeholder so it stays out of the adapted JSON and the admin API")
			break
		}
	}
	pathStyle := s.Endpoint != ""
	if s.PathStyle != nil {
		pathStyle = *s.PathStyle
	}
	var err error
	s.store, err = s3store.New(context.Background(), s3store.Config{
		Endpoint:        repl.ReplaceAll(s.Endpoint, ""),
		PublicEndpoint:  repl.ReplaceAll(s.PublicEndpoint, ""),
		Region:          repl.ReplaceAll(s.Region, ""),
		Bucket:          repl.ReplaceAll(s.Bucket, ""),
		AccessKeyID:     repl.ReplaceAll(s.AccessKeyID, ""),
		SecretAccessKey: repl.ReplaceAll(s.SecretAccessKey, ""),
		SessionToken:    repl.ReplaceAll(s.SessionToken, ""),
		UsePathStyle:    pathStyle,
		DisablePost:     s.DisablePost,
	})
	if err != nil {
		return fmt.Errorf("s3 storage: %v", err)
	}
	return nil
}

// ObjectStore implements StorageBackend.
func (s *S3Storage) ObjectStore() storage.ObjectStore { return s.store }

var (
	_ caddy.Provisioner = (*S3Storage)(nil)
	_ StorageBackend    = (*S3Storage)(nil)
)
