package main

import (
	"bytes"
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
	req.Header.Set("Content-Type", c.Headers["Content-Type"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("forwarded PUT: %d %s", resp.StatusCode, body)
	}
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
