package caddyupload

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/cloudfront/sign"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddyupload/caddyupload/storage"
)

// Download modes: where GET /{id}/download sends the client.
const (
	viaPresigned  = "presigned"  // a presigned GET on the bucket (default)
	viaCloudFront = "cloudfront" // a CloudFront signed URL
	viaPublic     = "public"     // base URL + key, for a public bucket or domain
	viaLink       = "link"       // a signed link this route serves itself
)

// DownloadVia picks where downloads are served from. Whatever the mode,
// GET /{id}/download first applies the route's download policy and checks
// that storage still holds the confirmed object.
type DownloadVia struct {
	// Mode is presigned (default), cloudfront, public or link.
	//   - cloudfront: a CloudFront signed URL for URL + "/" + key, valid
	//     for DownloadTTL, signed with KeyPairID and PrivateKey.
	//   - public: URL + "/" + key with no signature, for a bucket or custom
	//     domain the operator made public (an R2 custom domain, a CDN in
	//     front of a public bucket). It gives up per-request authorization,
	//     so it needs `download public`.
	//   - link: a short HMAC-signed, expiring link on this route
	//     (/{id}/content), served by Caddy streaming the object from the
	//     bucket, with Range and conditional requests, so that a CDN in
	//     front of Caddy can cache it and revocation is immediate.
	Mode string `json:"mode,omitempty"`
	// URL is the distribution's or public domain's base URL
	// (cloudfront, public).
	URL string `json:"url,omitempty"`
	// KeyPairID is CloudFront's public key id; PrivateKey the matching
	// PEM private key (RSA), best given as {file./path} or {env.NAME}.
	KeyPairID  string `json:"key_pair_id,omitempty"`
	PrivateKey string `json:"private_key,omitempty"`
	// Policy is canned (default) or custom: CloudFront's two forms of
	// signed URL; both bind the URL and its expiry.
	Policy string `json:"policy,omitempty"`
	// Secret keys the links (link); use {env.NAME}, at least 16 bytes.
	Secret string `json:"secret,omitempty"`
	// Inline lists the types (exact or type/*) a link serves inline, for
	// use in pages; anything else is an attachment. Default: none.
	Inline []string `json:"inline,omitempty"`

	base    *url.URL
	cfKey   crypto.Signer
	secret  []byte
	inlines *typeMatcher // nil: nothing inline
}

// provision checks the mode against the route (download policy) and
// loads its keys; placeholders are replaced here, so secrets stay out of
// the adapted config.
func (v *DownloadVia) provision(downloadPolicy string) error {
	repl := caddy.NewReplacer()
	switch v.Mode {
	case "", viaPresigned:
		v.Mode = viaPresigned
		return nil
	case viaCloudFront, viaPublic:
		u, err := url.Parse(repl.ReplaceAll(v.URL, ""))
		if err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" || u.RawQuery != "" {
			return fmt.Errorf("download_via %s: url must be an http(s) base URL without a query, not %q", v.Mode, v.URL)
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		v.base = u
	case viaLink:
	default:
		return fmt.Errorf("download_via: mode must be presigned, cloudfront, public or link, not %q", v.Mode)
	}
	switch v.Mode {
	case viaCloudFront:
		if v.KeyPairID == "" {
			return fmt.Errorf("download_via cloudfront: key_pair_id is required")
		}
		v.KeyPairID = repl.ReplaceAll(v.KeyPairID, "")
		key, err := loadRSAKey(repl.ReplaceAll(v.PrivateKey, ""))
		if err != nil {
			return fmt.Errorf("download_via cloudfront: private_key: %v", err)
		}
		v.cfKey = key
		if v.Policy == "" {
			v.Policy = "canned"
		}
		if v.Policy != "canned" && v.Policy != "custom" {
			return fmt.Errorf("download_via cloudfront: policy must be canned or custom, not %q", v.Policy)
		}
	case viaPublic:
		if downloadPolicy != "public" {
			return fmt.Errorf("download_via public serves objects without any check: it needs `download public`")
		}
	case viaLink:
		secret := repl.ReplaceAll(v.Secret, "")
		if len(secret) < 16 {
			return fmt.Errorf("download_via link: a secret of at least 16 bytes is required")
		}
		v.secret = []byte(secret)
		for _, t := range v.Inline {
			if !validTypePattern(t) {
				return fmt.Errorf("download_via link: inline: %q is not a media type or type/* pattern", t)
			}
		}
		if len(v.Inline) > 0 {
			m := newTypeMatcher(v.Inline)
			v.inlines = &m
		}
	}
	return nil
}

// objectURL is base/key with each key segment escaped.
func (v *DownloadVia) objectURL(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return v.base.String() + "/" + strings.Join(segs, "/")
}

// cloudFrontURL signs the object's URL for CloudFront until expires.
func (v *DownloadVia) cloudFrontURL(key string, expires time.Time) (string, error) {
	signer := sign.NewURLSigner(v.KeyPairID, v.cfKey)
	u := v.objectURL(key)
	if v.Policy == "custom" {
		return signer.SignWithPolicy(u, &sign.Policy{Statements: []sign.Statement{{
			Resource:  u,
			Condition: sign.Condition{DateLessThan: sign.NewAWSEpochTime(expires)},
		}}})
	}
	return signer.Sign(u, expires)
}

// downloadLocation is where the download of rec goes, and whether that
// location is a credential to keep out of logs.
func (h *Handler) downloadLocation(c *call, rec *storage.Record) (string, bool, error) {
	ttl := time.Duration(h.DownloadTTL)
	switch h.via.Mode {
	case viaCloudFront:
		u, err := h.via.cloudFrontURL(rec.Key, time.Now().Add(ttl))
		return u, true, err
	case viaPublic:
		return h.via.objectURL(rec.Key), false, nil
	case viaLink:
		return linkBase(c.r) + h.via.link(rec.ID, time.Now().Add(ttl)), true, nil
	}
	sr, err := h.store.PresignGet(c.ctx(), storage.GetInput{
		Key:         rec.Key,
		ContentType: rec.Type,
		// Browsers send Cache-Control with uploads and storage keeps it;
		// what the download says is the module's: private, and no longer
		// than the URL lives (the object under a key never changes).
		CacheControl:       fmt.Sprintf("private, max-age=%d, immutable", int(ttl.Seconds())),
		ContentDisposition: attachment(rec.Filename),
		TTL:                ttl,
	}, h.origin(c.r))
	if err != nil {
		return "", true, errStorage(err)
	}
	return sr.URL, true, nil
}

// loadRSAKey reads a PEM RSA private key: PKCS #1 (what CloudFront's
// documentation generates) through the CloudFront signer's own loader, or
// PKCS #8 (what OpenSSL 3 writes by default).
func loadRSAKey(pemText string) (*rsa.PrivateKey, error) {
	if key, err := sign.LoadPEMPrivKey(strings.NewReader(pemText)); err == nil {
		return key, nil
	}
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("not a PKCS #1 or PKCS #8 private key")
	}
	key, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("CloudFront signs with RSA keys only")
	}
	return key, nil
}

// linkBase is the site path of the route's /{id}/ for r, a request for
// /{id}/download under whatever prefix the route is mounted at (the
// original request's path, before handle_path stripped it).
func linkBase(r *http.Request) string {
	p := r.URL.Path
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		p = orig.URL.Path
	}
	return strings.TrimSuffix(p, "download")
}
