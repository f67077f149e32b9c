// Package embedded gives Caddy an S3-compatible server of its own, so that
// the upload handler works with no cloud bucket, the way file_server needs
// nothing but a directory.
//
// The server is versitygw with its POSIX backend, run by this same binary in
// a child process (the hidden `embedded-s3` subcommand): the POSIX backend
// changes the working directory of its process and versitygw allows one
// instance per process, neither of which may happen inside Caddy. The upload
// handler presigns requests against it exactly as against AWS or R2.
// Browsers send the bytes to the site that serves the upload API; the
// embedded_s3 handler streams them to the child on loopback, so they cross
// Caddy's process once, on their way to local disk, and never reach the
// application behind Caddy.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddyupload/caddyupload/storage/s3store"
)

func init() {
	caddy.RegisterModule(App{})
}

const (
	defaultListen = "127.0.0.1:9107"
	defaultBucket = "caddyupload"
	defaultRegion = "us-east-1"
	// healthPath is answered by the server without authentication. Bucket
	// names cannot start with '_', so it never hides a bucket.
	healthPath = "/_health"
	// startTimeout bounds the wait for a new server to answer and for the
	// bucket to be ensured.
	startTimeout = 30 * time.Second
)

// App is the embedded S3-compatible server (Caddy app `embedded_s3`). It is
// loaded with its defaults by the first module that needs it, so a Caddyfile
// needs the `embedded_s3` global option only to change them. The server
// process is shared by successive configs: a reload keeps it and its
// objects. Listen, data_dir, region and credentials are fixed while Caddy
// runs; changing them needs a restart.
type App struct {
	// Listen is the TCP address the server listens on. It must be on
	// loopback: browsers reach the server through the site's embedded_s3
	// handler. Default: 127.0.0.1:9107.
	Listen string `json:"listen,omitempty"`
	// DataDir holds the buckets and their objects, one file per object.
	// Default: upload/s3 under Caddy's data directory.
	DataDir string `json:"data_dir,omitempty"`
	// Bucket is the bucket the upload handler uses; it is created at start
	// when missing. Default: caddyupload.
	Bucket string `json:"bucket,omitempty"`
	// Region is the region requests are signed for. Default: us-east-1.
	Region string `json:"region,omitempty"`
	// AccessKeyID is the server's root access key, e.g. {env.S3_KEY}.
	// Default: a key generated once and kept, with the secret, in a file
	// beside DataDir that only Caddy's user can read.
	AccessKeyID string `json:"access_key_id,omitempty"`
	// SecretAccessKey is the root secret key, e.g. {env.S3_SECRET}.
	// Default: generated with the access key.
	SecretAccessKey string `json:"secret_access_key,omitempty"`

	settings settings
	bucket   string
	store    *s3store.Store
	logger   *zap.Logger
	// running is the shared server this config holds, from Start to Stop.
	running *server
}

// settings are what a running server was started with; every config that
// shares it must agree on them.
type settings struct {
	listen, dataDir, region string
	accessKeyID, secret     string
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "embedded_s3",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision fills the defaults, resolves placeholders and reads or creates
// the credentials. It starts nothing.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	for _, secret := range []string{a.AccessKeyID, a.SecretAccessKey} {
		if secret != "" && !strings.Contains(secret, "{") {
			a.logger.Warn("an embedded_s3 credential is written into the config; use an {env.*} placeholder so it stays out of the adapted JSON and the admin API")
			break
		}
	}
	listen := orDefault(repl.ReplaceAll(a.Listen, ""), defaultListen)
	if err := checkLoopback(listen); err != nil {
		return err
	}
	dataDir := repl.ReplaceAll(a.DataDir, "")
	if dataDir == "" {
		dataDir = filepath.Join(caddy.AppDataDir(), "upload", "s3")
	}
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return fmt.Errorf("embedded_s3: data_dir: %v", err)
	}
	a.settings = settings{
		listen:  listen,
		dataDir: dataDir,
		region:  orDefault(repl.ReplaceAll(a.Region, ""), defaultRegion),
	}
	if a.settings.accessKeyID, a.settings.secret, err = a.credentials(repl, dataDir); err != nil {
		return err
	}
	a.bucket = orDefault(repl.ReplaceAll(a.Bucket, ""), defaultBucket)
	if a.store, err = a.storeAt(""); err != nil {
		return fmt.Errorf("embedded_s3: %v", err)
	}
	return nil
}

// storeAt is a client of the server whose presigned URLs point at
// publicOrigin ("scheme://host"), or at the server itself when it is empty.
func (a *App) storeAt(publicOrigin string) (*s3store.Store, error) {
	return s3store.New(context.Background(), s3store.Config{
		Endpoint:        "http://" + a.settings.listen,
		PublicEndpoint:  publicOrigin,
		Region:          a.settings.region,
		Bucket:          a.bucket,
		AccessKeyID:     a.settings.accessKeyID,
		SecretAccessKey: a.settings.secret,
		UsePathStyle:    true,
	})
}

// credentials are the configured ones, or those kept beside the data dir.
func (a *App) credentials(repl *caddy.Replacer, dataDir string) (string, string, error) {
	id, secret := repl.ReplaceAll(a.AccessKeyID, ""), repl.ReplaceAll(a.SecretAccessKey, "")
	switch {
	case id != "" && secret != "":
		return id, secret, nil
	case id != "" || secret != "":
		return "", "", errors.New("embedded_s3: access_key_id and secret_access_key must be set together (an {env.*} placeholder may be empty)")
	case a.AccessKeyID != "" || a.SecretAccessKey != "":
		a.logger.Warn("embedded_s3 credentials are configured but empty; using the generated ones")
	}
	c, err := loadOrCreateCredentials(credentialsPath(dataDir))
	if err != nil {
		return "", "", fmt.Errorf("embedded_s3: %v", err)
	}
	return c.AccessKeyID, c.SecretAccessKey, nil
}

// Start starts the server, or joins the one a previous config started, and
// ensures the bucket exists.
func (a *App) Start() error {
	srv, err := acquireServer(a.settings)
	if err != nil {
		return err
	}
	a.running = srv
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := a.store.EnsureBucket(ctx); err != nil {
		a.release()
		return fmt.Errorf("embedded_s3: bucket %s: %v", a.store.Bucket(), err)
	}
	a.logger.Debug("embedded S3 server ready",
		zap.String("listen", a.settings.listen),
		zap.String("data_dir", a.settings.dataDir),
		zap.String("bucket", a.store.Bucket()),
		zap.Int("pid", srv.pid()))
	return nil
}

// Stop releases this config's use of the server; the last user stops it.
func (a *App) Stop() error {
	return a.release()
}

func (a *App) release() error {
	if a.running == nil {
		return nil
	}
	a.running = nil
	return releaseServer()
}

// Store is a client of the server for the module's own calls.
func (a *App) Store() *s3store.Store { return a.store }

// signer holds the credentials and region requests to the server are
// signed with.
func (a *App) signer() signer {
	return signer{accessKeyID: a.settings.accessKeyID, secret: a.settings.secret, region: a.settings.region}
}

// ListenAddr is the address the server listens on, once provisioned.
func (a *App) ListenAddr() string { return a.settings.listen }

// checkLoopback refuses addresses browsers could reach directly: every
// request to the server must pass the embedded_s3 handler's checks.
func checkLoopback(listen string) error {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port == "" || port == "0" {
		return fmt.Errorf("embedded_s3: listen %q: want host:port with a fixed port", listen)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("embedded_s3: listen %q: the server must listen on a loopback address; browsers reach it through the site's embedded_s3 handler", listen)
	}
	return nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
)
