// Package fakes3 is an in-memory S3-compatible HTTP server for the fast test
// tier. It speaks the part of the S3 API that storage/s3store uses and
// enforces what a real server enforces on it — SigV4 signatures (headers and
// presigned query), expiry, signed lengths, types and checksums, POST policy
// conditions, multipart rules, conditional writes, bucket CORS — so that a
// test which passes here does not pass only because the server is lenient.
// It is a test double: the real servers (versitygw, SeaweedFS) remain the
// reference, and storagetest.RunObjectStore is run against all of them.
//
// Only path-style addressing (<endpoint>/<bucket>/<key>) is served, with one
// identity (access key, secret key) and one region.
package fakes3

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Options configure a Server; every field has a default.
type Options struct {
	// AccessKey and SecretKey are the one identity allowed to sign.
	// Default: random.
	AccessKey string
	SecretKey string
	// Region is the only region a signature may name. Default "us-east-1".
	Region string
	// Now is the server's clock (expiry, skew, timestamps). Default time.Now.
	Now func() time.Time
}

// Server is the fake. Its zero value is not usable: build it with New or
// Start. It is safe for concurrent use.
type Server struct {
	AccessKey string
	SecretKey string
	Region    string
	// Endpoint is http://127.0.0.1:PORT when the server was started with
	// Start; "" for a bare handler from New.
	Endpoint string

	now func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket

	hs *http.Server
	ln net.Listener
}

// bucket holds objects by key and multipart uploads by upload id.
type bucket struct {
	created time.Time
	objects map[string]*object
	uploads map[string]*upload
	cors    []corsRule // nil: no CORS configuration
}

type object struct {
	data     []byte
	etag     string // quoted
	modified time.Time
	header   http.Header // Content-Type, Content-Disposition, ..., X-Amz-Meta-*
	sha256   string      // base64, full-object checksum; "" = none kept
	parts    int         // > 0 for an object assembled from parts
}

type upload struct {
	key       string
	initiated time.Time
	header    http.Header
	parts     map[int32]*part
}

type part struct {
	data     []byte
	etag     string // quoted
	modified time.Time
}

// New returns the fake as an http.Handler, not listening anywhere (for
// httptest.NewServer or a custom listener).
func New(opts Options) *Server {
	if opts.AccessKey == "" {
		opts.AccessKey = "AKFAKE" + strings.ToUpper(randomHex(7))
	}
	if opts.SecretKey == "" {
		opts.SecretKey = randomHex(20)
	}
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Server{
		AccessKey: opts.AccessKey,
		SecretKey: opts.SecretKey,
		Region:    opts.Region,
		now:       opts.Now,
		buckets:   map[string]*bucket{},
	}
}

// Start builds the fake and serves it on a free loopback port.
func Start(opts Options) (*Server, error) {
	s := New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.ln = ln
	s.Endpoint = "http://" + ln.Addr().String()
	s.hs = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go s.hs.Serve(ln) // returns when Close closes the listener
	return s, nil
}

// Close stops a started server; a bare handler has nothing to close.
func (s *Server) Close() error {
	if s.hs == nil {
		return nil
	}
	return s.hs.Close()
}

// ObjectCount is the number of objects in bucket (-1 when it does not
// exist), for tests that check a refused request stored nothing.
func (s *Server) ObjectCount(bucketName string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[bucketName]
	if b == nil {
		return -1
	}
	return len(b.objects)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
