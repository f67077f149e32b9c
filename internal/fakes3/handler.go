package fakes3

import (
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ServeHTTP routes a path-style S3 request: "/" is the service,
// "/<bucket>" the bucket, "/<bucket>/<key>" an object.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Amz-Request-Id", strings.ToUpper(randomHex(8)))
	w.Header().Set("Server", "fakes3")
	if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
		fail(w, r, errorf(http.StatusBadRequest, "InvalidArgument", "The query string is malformed."))
		return
	}
	bucketName, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")

	if bucketName != "" {
		if r.Method == http.MethodOptions {
			s.preflight(w, r, bucketName)
			return
		}
		s.corsHeaders(w, r, bucketName)
	}
	if bucketName != "" && key == "" && r.Method == http.MethodPost && isForm(r) {
		s.postObject(w, r, bucketName)
		return
	}

	payload, e := s.authenticate(r)
	if e != nil {
		fail(w, r, e)
		return
	}
	c := &call{s: s, w: w, r: r, q: r.URL.Query(), bucket: bucketName, key: key, payload: payload}
	switch {
	case bucketName == "":
		e = c.service()
	case key == "":
		e = c.bucketOp()
	default:
		if len(key) > 1024 {
			e = errKeyTooLong
		} else {
			e = c.objectOp()
		}
	}
	if e != nil {
		fail(w, r, e)
	}
}

// call is one authenticated request.
type call struct {
	s       *Server
	w       http.ResponseWriter
	r       *http.Request
	q       url.Values
	bucket  string
	key     string
	payload string // signed payload hash, "" when unsigned
}

func (c *call) service() *apiError {
	if c.r.Method != http.MethodGet {
		return errorf(http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource.")
	}
	return c.listBuckets()
}

func (c *call) bucketOp() *apiError {
	q := c.q
	switch c.r.Method {
	case http.MethodPut:
		switch {
		case q.Has("cors"):
			return c.putCORS()
		case !hasSubresource(q):
			return c.createBucket()
		}
	case http.MethodHead:
		if !hasSubresource(q) {
			return c.headBucket()
		}
	case http.MethodGet:
		switch {
		case q.Has("cors"):
			return c.getCORS()
		case q.Has("uploads"):
			return c.listUploads()
		case q.Has("location"):
			return c.location()
		case q.Get("list-type") == "2":
			return c.listObjects(true)
		case !hasSubresource(q):
			return c.listObjects(false)
		}
	case http.MethodDelete:
		switch {
		case q.Has("cors"):
			return c.deleteCORS()
		case !hasSubresource(q):
			return c.deleteBucket()
		}
	case http.MethodPost:
		if q.Has("delete") {
			return c.deleteObjects()
		}
	default:
		return errorf(http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource.")
	}
	return errNotImpl
}

func (c *call) objectOp() *apiError {
	q := c.q
	switch c.r.Method {
	case http.MethodPut:
		switch {
		case c.r.Header.Get("X-Amz-Copy-Source") != "":
			return errNotImpl
		case q.Has("uploadId") || q.Has("partNumber"):
			return c.uploadPart()
		case !hasSubresource(q):
			return c.putObject()
		}
	case http.MethodGet, http.MethodHead:
		switch {
		case q.Has("uploadId") && c.r.Method == http.MethodGet:
			return c.listParts()
		case !hasSubresource(q):
			return c.getObject()
		}
	case http.MethodDelete:
		switch {
		case q.Has("uploadId"):
			return c.abortUpload()
		case !hasSubresource(q):
			return c.deleteObject()
		}
	case http.MethodPost:
		switch {
		case q.Has("uploads"):
			return c.createUpload()
		case q.Has("uploadId"):
			return c.completeUpload()
		}
	default:
		return errorf(http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource.")
	}
	return errNotImpl
}

// hasSubresource reports a query parameter that names an operation this
// server does not implement (anything but signing, listing and response
// overrides), so that it is refused rather than taken for a plain request.
func hasSubresource(q url.Values) bool {
	for k := range q {
		switch {
		case strings.HasPrefix(k, "X-Amz-"), strings.HasPrefix(k, "x-amz-"), strings.HasPrefix(k, "response-"),
			k == "prefix", k == "delimiter", k == "max-keys", k == "marker", k == "encoding-type",
			k == "continuation-token", k == "start-after", k == "fetch-owner", k == "list-type", k == "x-id":
		default:
			return true
		}
	}
	return false
}

// lockBucket locks the server and returns the call's bucket; the caller
// unlocks s.mu.
func (c *call) lockBucket() (*bucket, *apiError) {
	c.s.mu.Lock()
	b := c.s.buckets[c.bucket]
	if b == nil {
		c.s.mu.Unlock()
		return nil, errNoSuchBucket
	}
	return b, nil
}

func (c *call) now() time.Time { return c.s.now().UTC() }

// httpDate is the Last-Modified format.
func httpDate(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

// isoTime is the timestamp format of S3's XML documents.
func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
