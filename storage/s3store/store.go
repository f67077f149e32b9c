// Package s3store is the storage.ObjectStore of caddyupload on the S3 API:
// AWS S3, Cloudflare R2 and self-hosted S3-compatible servers. Presigning is
// local computation done on the create route's hot path, so it bypasses the
// SDK's operation stack; every other operation goes through the SDK client.
package s3store

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/caddyupload/caddyupload/storage"
)

// Config describes one bucket. Credentials are secrets: they never appear in
// errors or in String output of anything in this package.
type Config struct {
	// Endpoint is the base URL the module itself uses to reach the S3 API,
	// e.g. "https://<account>.r2.cloudflarestorage.com" or
	// "http://127.0.0.1:7070". Empty means AWS S3 in Region.
	Endpoint string
	// PublicEndpoint is the base URL browsers use in presigned requests,
	// when it differs from Endpoint (a server on a private network exposed
	// under another name). Empty means Endpoint.
	PublicEndpoint string
	// Region signs every request. Default "us-east-1"; "auto" for R2.
	Region string
	// Bucket is required.
	Bucket string
	// AccessKeyID and SecretAccessKey are static credentials. When both are
	// empty the SDK's default chain is used (environment, shared files,
	// instance or task role).
	AccessKeyID     string
	SecretAccessKey string
	// SessionToken accompanies temporary static credentials. Optional.
	SessionToken string
	// UsePathStyle addresses the bucket as <endpoint>/<bucket>/<key> instead
	// of <bucket>.<endpoint host>/<key>. Most self-hosted servers need it.
	// Default false (virtual-hosted, as AWS and R2 prefer).
	UsePathStyle bool
	// DisablePost declares that the server does not accept POST policy
	// uploads (Cloudflare R2). Default false.
	DisablePost bool
	// HTTPClient is used by the SDK client. Default: the SDK's own.
	HTTPClient *http.Client
}

// Store is a storage.ObjectStore on one bucket. It is safe for concurrent use.
type Store struct {
	client *s3.Client
	creds  aws.CredentialsProvider
	signer *v4.Signer

	bucket      string
	bucketPath  string // "/" + bucket, for path-style URLs
	virtualHost string // bucket + "." + the public host, for the others
	region      string
	pathStyle   bool
	disablePost bool
	// public is where browsers reach the S3 API when no Origin is given.
	public *url.URL
	id     string
}

// defaultTTL is the lifetime of a presigned request whose TTL is zero.
const defaultTTL = 60 * time.Second

// maxTTL is the longest lifetime SigV4 allows for a presigned request.
const maxTTL = 7 * 24 * time.Hour

// New checks cfg and builds the store. It makes no network call.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := validBucket(cfg.Bucket); err != nil {
		return nil, err
	}
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	if (cfg.AccessKeyID == "") != (cfg.SecretAccessKey == "") {
		return nil, errors.New("s3: access key id and secret access key must be set together")
	}
	endpoint, err := parseEndpoint("endpoint", cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	public, err := parseEndpoint("public endpoint", cfg.PublicEndpoint)
	if err != nil {
		return nil, err
	}
	if public == nil {
		public = endpoint
	}
	if public == nil {
		public = &url.URL{Scheme: "https", Host: "s3." + region + ".amazonaws.com"}
	}

	var creds aws.CredentialsProvider
	if cfg.AccessKeyID != "" {
		creds = credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)
	} else {
		// Loading the default chain reads environment and files only; a
		// role's credentials are fetched on first use.
		awsCfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(region))
		if err != nil {
			return nil, fmt.Errorf("s3: default credentials: %w", err)
		}
		creds = awsCfg.Credentials
	}
	creds = aws.NewCredentialsCache(creds)

	opts := s3.Options{
		Region:       region,
		Credentials:  creds,
		UsePathStyle: cfg.UsePathStyle,
		// The SDK's default CRC trailers are refused by R2 and SeaweedFS.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}
	if endpoint != nil {
		opts.BaseEndpoint = aws.String(endpoint.String())
	}
	if cfg.HTTPClient != nil {
		opts.HTTPClient = cfg.HTTPClient
	}

	idHost := "aws"
	if endpoint != nil {
		idHost = endpoint.Host
	}
	// Keys are escaped once, by escapeKey: S3 does not double-encode.
	signer := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	return &Store{
		client:      s3.New(opts),
		creds:       creds,
		signer:      signer,
		bucket:      cfg.Bucket,
		bucketPath:  "/" + cfg.Bucket,
		virtualHost: cfg.Bucket + "." + public.Host,
		region:      region,
		pathStyle:   cfg.UsePathStyle || !dnsCompatible(cfg.Bucket),
		disablePost: cfg.DisablePost,
		public:      public,
		id:          "s3:" + idHost + "/" + cfg.Bucket,
	}, nil
}

// ID is "s3:<endpoint host or aws>/<bucket>".
func (s *Store) ID() string { return s.id }

// SupportsPost is false when the config disables POST policy uploads.
func (s *Store) SupportsPost() bool { return !s.disablePost }

// Client is the SDK client, for operations this package does not wrap.
func (s *Store) Client() *s3.Client { return s.client }

// Bucket is the bucket name.
func (s *Store) Bucket() string { return s.bucket }

// parseEndpoint accepts an absolute http(s) URL without path, query or
// user info: SigV4 signs the path the server sees, so a prefix added by a
// proxy would break every signature.
func parseEndpoint(what, raw string) (*url.URL, error) {
	if raw == "" {
		return nil, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("s3: %s: %w", what, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("s3: %s %q: scheme must be http or https", what, raw)
	}
	if u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("s3: %s %q: want scheme://host[:port] only", what, raw)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// validBucket accepts the names S3 and its look-alikes allow, loosely:
// 3–63 characters of lower-case letters, digits, '.', '-' and '_'.
func validBucket(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("s3: bucket %q: want 3 to 63 characters", b)
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("s3: bucket %q: invalid character %q", b, c)
		}
	}
	return nil
}

// dnsCompatible reports whether the bucket can be a host label; names with
// dots or underscores are addressed path-style (dots break TLS wildcards).
func dnsCompatible(b string) bool {
	return !strings.ContainsAny(b, "._")
}

var _ storage.ObjectStore = (*Store)(nil)
