package fakes3

import (
	"bytes"
	"encoding/xml"
	"net/http"
	"strings"
	"time"
)

const s3NS = "http://s3.amazonaws.com/doc/2006-03-01/"

// storedHeaders are the request headers an object keeps and answers with.
var storedHeaders = []string{"Content-Type", "Content-Disposition", "Content-Encoding", "Content-Language", "Cache-Control", "Expires"}

// objectHeader picks what an object keeps from a PUT or a multipart create.
func objectHeader(h http.Header) http.Header {
	out := http.Header{}
	for _, k := range storedHeaders {
		if v := h.Get(k); v != "" {
			out.Set(k, v)
		}
	}
	if out.Get("Content-Type") == "" {
		out.Set("Content-Type", "binary/octet-stream") // what S3 stores when none is given
	}
	for k, v := range h {
		if strings.HasPrefix(k, "X-Amz-Meta-") {
			out[k] = v
		}
	}
	return out
}

func (c *call) putObject() *apiError {
	if e := c.bucketExists(); e != nil {
		return e
	}
	if inm := c.r.Header.Get("If-None-Match"); inm != "" && inm != "*" {
		return errorf(http.StatusNotImplemented, "NotImplemented", "If-None-Match on PUT only supports '*'")
	}
	data, e := readBody(c.r, c.payload, maxObjectSize)
	if e != nil {
		return e
	}
	sha, e := checkDigests(c.r.Header, data)
	if e != nil {
		return e
	}
	obj := &object{data: data, etag: etagOf(data), modified: c.now(), header: objectHeader(c.r.Header), sha256: sha}
	b, e := c.lockBucket()
	if e != nil {
		return e
	}
	defer c.s.mu.Unlock()
	// Conditions are checked at commit, under the lock: of two racing
	// If-None-Match writes exactly one wins.
	if e := writeCondition(c.r.Header, b.objects[c.key]); e != nil {
		return e
	}
	b.objects[c.key] = obj
	c.w.Header().Set("ETag", obj.etag)
	if sha != "" {
		c.w.Header().Set("X-Amz-Checksum-Sha256", sha)
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}

// writeCondition applies If-None-Match: * and If-Match to a write over old.
func writeCondition(h http.Header, old *object) *apiError {
	if h.Get("If-None-Match") == "*" && old != nil {
		return errPrecondition
	}
	if im := h.Get("If-Match"); im != "" {
		if old == nil {
			return errNoSuchKey
		}
		if !etagMatches(im, old.etag) {
			return errPrecondition
		}
	}
	return nil
}

// etagMatches reports whether an If-Match / If-None-Match list names etag.
func etagMatches(list, etag string) bool {
	for v := range strings.SplitSeq(list, ",") {
		v = strings.TrimSpace(v)
		if v == "*" || strings.Trim(v, `"`) == strings.Trim(etag, `"`) {
			return true
		}
	}
	return false
}

// responseOverrides are the query parameters of a signed GET that set a
// header of the answer.
var responseOverrides = map[string]string{
	"response-content-type":        "Content-Type",
	"response-content-disposition": "Content-Disposition",
	"response-content-encoding":    "Content-Encoding",
	"response-content-language":    "Content-Language",
	"response-cache-control":       "Cache-Control",
	"response-expires":             "Expires",
}

func (c *call) getObject() *apiError {
	b, e := c.lockBucket()
	if e != nil {
		return e
	}
	obj := b.objects[c.key] // objects are never changed in place
	c.s.mu.Unlock()
	if obj == nil {
		return errNoSuchKey
	}
	h := c.w.Header()
	for k, v := range obj.header {
		h[k] = v
	}
	h.Set("ETag", obj.etag)
	h.Set("Last-Modified", httpDate(obj.modified))
	h.Set("Accept-Ranges", "bytes")
	if obj.sha256 != "" && strings.EqualFold(c.r.Header.Get("X-Amz-Checksum-Mode"), "ENABLED") {
		h.Set("X-Amz-Checksum-Sha256", obj.sha256)
		h.Set("X-Amz-Checksum-Type", "FULL_OBJECT")
	}
	for p, hk := range responseOverrides {
		if v := c.q.Get(p); v != "" {
			h.Set(hk, v)
		}
	}
	switch readCondition(c.r.Header, obj) {
	case http.StatusPreconditionFailed:
		return errPrecondition
	case http.StatusNotModified:
		for _, k := range []string{"Content-Type", "Content-Length", "Content-Disposition", "Content-Encoding"} {
			h.Del(k)
		}
		c.w.WriteHeader(http.StatusNotModified)
		return nil
	}
	// ServeContent answers ranges; the conditions were applied above.
	r := c.r.Clone(c.r.Context())
	for _, k := range []string{"If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since", "If-Range"} {
		r.Header.Del(k)
	}
	http.ServeContent(c.w, r, "", time.Time{}, bytes.NewReader(obj.data))
	return nil
}

// readCondition is the status the conditional headers of a GET or HEAD
// call for (0 = serve the object), in S3's order of precedence.
func readCondition(h http.Header, obj *object) int {
	modified := obj.modified.Truncate(time.Second)
	im, inm := h.Get("If-Match"), h.Get("If-None-Match")
	if im != "" && !etagMatches(im, obj.etag) {
		return http.StatusPreconditionFailed
	}
	if im == "" {
		if t, err := http.ParseTime(h.Get("If-Unmodified-Since")); err == nil && modified.After(t) {
			return http.StatusPreconditionFailed
		}
	}
	if inm != "" && etagMatches(inm, obj.etag) {
		return http.StatusNotModified
	}
	if inm == "" {
		if t, err := http.ParseTime(h.Get("If-Modified-Since")); err == nil && !modified.After(t) {
			return http.StatusNotModified
		}
	}
	return 0
}

func (c *call) deleteObject() *apiError {
	b, e := c.lockBucket()
	if e != nil {
		return e
	}
	delete(b.objects, c.key)
	c.s.mu.Unlock()
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

type deleteRequest struct {
	Quiet   bool `xml:"Quiet"`
	Objects []struct {
		Key string `xml:"Key"`
	} `xml:"Object"`
}

type deleteResult struct {
	XMLName xml.Name        `xml:"DeleteResult"`
	NS      string          `xml:"xmlns,attr"`
	Deleted []deletedObject `xml:"Deleted"`
	Errors  []deleteError   `xml:"Error"`
}

type deletedObject struct {
	Key string `xml:"Key"`
}

type deleteError struct {
	Key     string `xml:"Key"`
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

func (c *call) deleteObjects() *apiError {
	body, e := c.readDigestedXML()
	if e != nil {
		return e
	}
	var req deleteRequest
	if err := xml.Unmarshal(body, &req); err != nil || len(req.Objects) == 0 || len(req.Objects) > 1000 {
		return errMalformedXML
	}
	res := deleteResult{NS: s3NS}
	b, e := c.lockBucket()
	if e != nil {
		return e
	}
	for _, o := range req.Objects {
		if o.Key == "" || len(o.Key) > 1024 {
			res.Errors = append(res.Errors, deleteError{Key: o.Key, Code: "InvalidArgument", Message: "Invalid key"})
			continue
		}
		delete(b.objects, o.Key) // a missing key counts as deleted, as on S3
		if !req.Quiet {
			res.Deleted = append(res.Deleted, deletedObject{Key: o.Key})
		}
	}
	c.s.mu.Unlock()
	writeXML(c.w, c.r, http.StatusOK, res)
	return nil
}

func hasChecksumHeader(h http.Header) bool {
	for _, c := range checksums {
		if h.Get(c.header) != "" {
			return true
		}
	}
	return false
}

func (c *call) bucketExists() *apiError {
	if _, e := c.lockBucket(); e != nil {
		return e
	}
	c.s.mu.Unlock()
	return nil
}
