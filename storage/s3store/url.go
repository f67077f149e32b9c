package s3store

import (
	"errors"
	"net/url"
	"strings"

	"github.com/caddyupload/caddyupload/internal/pct"
	"github.com/caddyupload/caddyupload/storage"
)

// keyChars and queryChars are what SigV4 leaves unencoded in a key's path
// and in a query value: S3 canonicalizes every other byte to %XX.
var (
	keyChars   = pct.Unreserved("/")
	queryChars = pct.Unreserved("")
)

// escapeKey encodes a key for the URL path as S3 canonicalizes it. The
// signer is told not to escape again, since S3 does not double-encode.
func escapeKey(key string) string { return keyChars.Escape(key) }

// checkKey refuses keys a browser or proxy would rewrite before the request
// reaches the server ("." and ".." segments are normalized away by URL
// parsers), which would make the signature fail or address another object.
func checkKey(key string) error {
	if key == "" || len(key) > 1024 {
		return errors.New("s3: key must be 1 to 1024 bytes")
	}
	if key[0] == '/' {
		return errors.New("s3: key must not start with '/'")
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "." || seg == ".." {
			return errors.New("s3: key must not contain '.' or '..' segments")
		}
	}
	return nil
}

// target is where a presigned request goes: scheme, host and the escaped
// path of the bucket (path-style) or "" (virtual-hosted).
type target struct {
	scheme, host, bucketPath string
}

// targetFor addresses the bucket through origin when it is set — always
// path-style, since the origin's host is one the browser already uses — or
// through the public endpoint otherwise.
func (s *Store) targetFor(origin storage.Origin) target {
	if origin.Host != "" {
		scheme := origin.Scheme
		if scheme == "" {
			scheme = "https"
		}
		return target{scheme: scheme, host: origin.Host, bucketPath: s.bucketPath}
	}
	if s.pathStyle {
		return target{scheme: s.public.Scheme, host: s.public.Host, bucketPath: s.bucketPath}
	}
	return target{scheme: s.public.Scheme, host: s.virtualHost}
}

// objectURL is the unsigned URL of key with the escaped query rawQuery. The
// path is kept in Opaque so that net/url does not re-escape it.
func (t target) objectURL(key, rawQuery string) *url.URL {
	return &url.URL{
		Scheme:   t.scheme,
		Host:     t.host,
		Opaque:   "//" + t.host + t.bucketPath + "/" + escapeKey(key),
		RawQuery: rawQuery,
	}
}

// bucketURL is the URL a POST policy form is sent to.
func (t target) bucketURL() string {
	if t.bucketPath == "" {
		return t.scheme + "://" + t.host + "/"
	}
	return t.scheme + "://" + t.host + t.bucketPath
}
