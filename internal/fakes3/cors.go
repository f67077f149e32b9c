package fakes3

import (
	"encoding/xml"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

type corsRule struct {
	ID             string   `xml:"ID,omitempty"`
	AllowedHeaders []string `xml:"AllowedHeader"`
	AllowedMethods []string `xml:"AllowedMethod"`
	AllowedOrigins []string `xml:"AllowedOrigin"`
	ExposeHeaders  []string `xml:"ExposeHeader"`
	MaxAgeSeconds  *int     `xml:"MaxAgeSeconds"`
}

type corsConfig struct {
	XMLName xml.Name   `xml:"CORSConfiguration"`
	NS      string     `xml:"xmlns,attr,omitempty"`
	Rules   []corsRule `xml:"CORSRule"`
}

var corsMethods = []string{"GET", "PUT", "HEAD", "POST", "DELETE"}

func (c *call) putCORS() *apiError {
	body, e := c.readDigestedXML()
	if e != nil {
		return e
	}
	var cfg corsConfig
	if err := xml.Unmarshal(body, &cfg); err != nil || len(cfg.Rules) == 0 || len(cfg.Rules) > 100 {
		return errMalformedXML
	}
	for _, r := range cfg.Rules {
		if len(r.AllowedMethods) == 0 || len(r.AllowedOrigins) == 0 {
			return errMalformedXML
		}
		for _, m := range r.AllowedMethods {
			if !slices.Contains(corsMethods, m) {
				return errorf(http.StatusBadRequest, "InvalidRequest", "Found unsupported HTTP method in CORS config. Unsupported method is %s", m)
			}
		}
		for _, o := range append(slices.Clone(r.AllowedOrigins), r.AllowedHeaders...) {
			if strings.Count(o, "*") > 1 {
				return errorf(http.StatusBadRequest, "InvalidRequest", "AllowedOrigin and AllowedHeader may hold at most one wildcard: %q", o)
			}
		}
	}
	b, e := c.lockBucket()
	if e != nil {
		return e
	}
	b.cors = cfg.Rules
	c.s.mu.Unlock()
	c.w.WriteHeader(http.StatusOK)
	return nil
}

func (c *call) getCORS() *apiError {
	b, e := c.lockBucket()
	if e != nil {
		return e
	}
	rules := b.cors
	c.s.mu.Unlock()
	if rules == nil {
		return errNoSuchCORS
	}
	writeXML(c.w, c.r, http.StatusOK, corsConfig{NS: s3NS, Rules: rules})
	return nil
}

func (c *call) deleteCORS() *apiError {
	b, e := c.lockBucket()
	if e != nil {
		return e
	}
	b.cors = nil
	c.s.mu.Unlock()
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) rules(bucketName string) (rules []corsRule, exists bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[bucketName]
	if b == nil {
		return nil, false
	}
	return b.cors, true
}

// preflight answers an OPTIONS request from the bucket's CORS rules, as S3
// does: 403 unless a rule allows the origin, the method and every
// requested header.
func (s *Server) preflight(w http.ResponseWriter, r *http.Request, bucketName string) {
	origin, method := r.Header.Get("Origin"), r.Header.Get("Access-Control-Request-Method")
	if origin == "" || method == "" {
		fail(w, r, errorf(http.StatusBadRequest, "BadRequest", "Insufficient information. Origin request header needed."))
		return
	}
	rules, exists := s.rules(bucketName)
	switch {
	case !exists:
		fail(w, r, errorf(http.StatusForbidden, "AccessForbidden", "CORSResponse: Bucket not found"))
		return
	case rules == nil:
		fail(w, r, errorf(http.StatusForbidden, "AccessForbidden", "CORSResponse: CORS is not enabled for this bucket."))
		return
	}
	var asked []string
	for _, v := range r.Header.Values("Access-Control-Request-Headers") {
		for h := range strings.SplitSeq(v, ",") {
			if h = strings.TrimSpace(strings.ToLower(h)); h != "" {
				asked = append(asked, h)
			}
		}
	}
	for _, rule := range rules {
		if !rule.allows(origin, method) {
			continue
		}
		ok := true
		for _, h := range asked {
			ok = ok && slices.ContainsFunc(rule.AllowedHeaders, func(p string) bool { return wildcardMatch(strings.ToLower(p), h) })
		}
		if !ok {
			continue
		}
		rule.setHeaders(w.Header(), origin)
		if len(asked) > 0 {
			w.Header().Set("Access-Control-Allow-Headers", strings.Join(asked, ", "))
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	fail(w, r, errorf(http.StatusForbidden, "AccessForbidden",
		"CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec."))
}

// corsHeaders adds the CORS answer headers to a request from an allowed
// origin, so that the page can read the answer (and the ETag).
func (s *Server) corsHeaders(w http.ResponseWriter, r *http.Request, bucketName string) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return
	}
	rules, _ := s.rules(bucketName)
	for _, rule := range rules {
		if rule.allows(origin, r.Method) {
			rule.setHeaders(w.Header(), origin)
			return
		}
	}
}

func (rule corsRule) allows(origin, method string) bool {
	return slices.Contains(rule.AllowedMethods, method) &&
		slices.ContainsFunc(rule.AllowedOrigins, func(p string) bool { return wildcardMatch(p, origin) })
}

func (rule corsRule) setHeaders(h http.Header, origin string) {
	if slices.Contains(rule.AllowedOrigins, "*") {
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	h.Set("Access-Control-Allow-Methods", strings.Join(rule.AllowedMethods, ", "))
	if len(rule.ExposeHeaders) > 0 {
		h.Set("Access-Control-Expose-Headers", strings.Join(rule.ExposeHeaders, ", "))
	}
	if rule.MaxAgeSeconds != nil {
		h.Set("Access-Control-Max-Age", strconv.Itoa(*rule.MaxAgeSeconds))
	}
	h.Set("Vary", "Origin, Access-Control-Request-Headers, Access-Control-Request-Method")
}

// wildcardMatch matches s against a pattern with at most one '*'.
func wildcardMatch(pattern, s string) bool {
	before, after, found := strings.Cut(pattern, "*")
	if !found {
		return pattern == s
	}
	return len(s) >= len(before)+len(after) && strings.HasPrefix(s, before) && strings.HasSuffix(s, after)
}

// readDigestedXML reads the XML body of a request S3 wants a Content-MD5
// (or another checksum) on, and verifies it.
func (c *call) readDigestedXML() ([]byte, *apiError) {
	if c.r.Header.Get("Content-Md5") == "" && !hasChecksumHeader(c.r.Header) {
		return nil, errorf(http.StatusBadRequest, "InvalidRequest", "Missing required header for this request: Content-MD5")
	}
	body, e := readBody(c.r, c.payload, maxXMLBody)
	if e != nil {
		return nil, e
	}
	if _, e := checkDigests(c.r.Header, body); e != nil {
		return nil, e
	}
	return body, nil
}
