package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

// TestPublicOriginBehindTLSProxy runs the site as it runs behind a proxy
// that terminates TLS: browsers use https://<host>, Caddy receives plain
// HTTP with the same Host. Presigned URLs must say https, and the storage
// server must accept them as the proxy forwards them. Without
// public_origin (control) they say http.
func TestPublicOriginBehindTLSProxy(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	public := "https://" + realservers.Addr(s.Port)
	s.Upload = "storage embedded {\n\t\t\tpublic_origin " + public + "\n\t\t}"
	s.start(t)

	content := "through a TLS-terminating proxy\n"
	c := s.create(t, "note.txt", len(content), "text/plain")
	if !strings.HasPrefix(c.URL, public+"/caddyupload/") {
		t.Fatalf("presigned URL %q, want it under %s/caddyupload/", c.URL, public)
	}
	// The proxy forwards the request over plain HTTP, Host unchanged.
	forwarded := "http" + strings.TrimPrefix(c.URL, "https")
	req, _ := http.NewRequest(http.MethodPut, forwarded, bytes.NewReader([]byte(content)))
	setSigned(req, c)
	mustPut(t, req)
	s.complete(t, c.ID)
	status, loc := s.api(t, http.MethodGet, "/"+c.ID+"/download", nil)
	if u, err := url.Parse(string(loc)); status != http.StatusFound || err != nil || u.Scheme != "https" || u.Host != realservers.Addr(s.Port) {
		t.Fatalf("download: %d to %q, want a redirect to %s", status, loc, public)
	}
	p := s.formParams(t, "form.txt", "text/plain")
	if p.URL != public+"/caddyupload" {
		t.Fatalf("form URL %q, want %s/caddyupload", p.URL, public)
	}

	// Control: a site without public_origin signs for what Caddy sees,
	// plain HTTP.
	plain := newSite(t)
	plain.start(t)
	if c := plain.create(t, "note.txt", 1, "text/plain"); !strings.HasPrefix(c.URL, plain.base()+"/caddyupload/") {
		t.Fatalf("without public_origin: presigned URL %q, want %s/caddyupload/", c.URL, plain.base())
	}
}

// TestForwardedOriginFromTrustedProxy: behind a TLS-terminating proxy that
// Caddy trusts, presigned URLs take the origin the proxy reports, and the
// embedded server accepts them as the proxy forwards them; a client that is
// not a trusted proxy cannot choose the origin (control).
func TestForwardedOriginFromTrustedProxy(t *testing.T) {
	t.Parallel()
	const host = "uploads.example.test"
	createVia := func(s *site) created {
		req, _ := http.NewRequest(http.MethodPost, s.base()+"/uploads/", strings.NewReader(`{"filename":"a.txt","size":5,"type":"text/plain"}`))
		req.SetBasicAuth(user, password)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-Proto", "https")
		req.Header.Set("X-Forwarded-Host", host)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var c created
		if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("create: %d %v", resp.StatusCode, err)
		}
		return c
	}

	s := newSite(t)
	s.Global = "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}"
	s.start(t)
	c := createVia(s)
	if !strings.HasPrefix(c.URL, "https://"+host+"/caddyupload/") {
		t.Fatalf("presigned URL %q, want it for https://%s", c.URL, host)
	}
	// The proxy forwards the PUT over plain HTTP with the forwarded host.
	u, _ := url.Parse(c.URL)
	req, _ := http.NewRequest(http.MethodPut, s.base()+u.RequestURI(), strings.NewReader("hello"))
	setSigned(req, c)
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Host", host)
	mustPut(t, req)
	s.complete(t, c.ID)

	// Control: the same headers from a client Caddy does not trust.
	plain := newSite(t)
	plain.start(t)
	if c := createVia(plain); !strings.HasPrefix(c.URL, plain.base()+"/caddyupload/") {
		t.Fatalf("untrusted X-Forwarded-*: presigned URL %q, want %s/caddyupload/", c.URL, plain.base())
	}
}

// setSigned sets every header the presigned request must carry; the
// client computes Content-Length itself.
func setSigned(req *http.Request, c created) {
	for k, v := range c.Headers {
		if k != "Content-Length" {
			req.Header.Set(k, v)
		}
	}
}

// mustPut sends a PUT the way the proxy forwards it and wants 200.
func mustPut(t *testing.T, req *http.Request) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("forwarded PUT: %d %s", resp.StatusCode, body)
	}
}
