package caddyupload

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

// confirmFile uploads body as user and confirms it.
func (s *testSite) confirmFile(user, name, typ string, body []byte) created {
	s.t.Helper()
	c := s.create(user, name, int64(len(body)), typ)
	if st := s.put(c, body, nil); st != 200 {
		s.t.Fatalf("PUT %s: %d", name, st)
	}
	if resp := s.call(user, "POST", "/"+c.ID+"/complete", nil, nil); resp.StatusCode != 200 {
		s.t.Fatalf("complete %s: %d", name, resp.StatusCode)
	}
	return c
}

// location is where GET /{id}/download redirects user.
func (s *testSite) location(user, id string) *url.URL {
	s.t.Helper()
	resp := s.call(user, "GET", "/"+id+"/download", nil, nil)
	if resp.StatusCode != http.StatusFound {
		s.t.Fatalf("download: %d", resp.StatusCode)
	}
	base, _ := url.Parse(s.base + "/up/" + id + "/download")
	u, err := base.Parse(resp.Header.Get("Location"))
	if err != nil {
		s.t.Fatal(err)
	}
	return u
}

// cloudFrontB64 undoes CloudFront's URL-safe base64 (+ → -, = → _, / → ~).
func cloudFrontB64(s string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(strings.NewReplacer("-", "+", "_", "=", "~", "/").Replace(s))
}

// verifyCloudFront checks a signed URL the way CloudFront documents it:
// the policy (canned: rebuilt from the URL and Expires; custom: the Policy
// parameter) signed with RSA-SHA1 by the key pair's private key.
func verifyCloudFront(t *testing.T, signed *url.URL, pub *rsa.PublicKey, keyID, resource string, expires time.Time) {
	t.Helper()
	q := signed.Query()
	if q.Get("Key-Pair-Id") != keyID {
		t.Errorf("Key-Pair-Id %q", q.Get("Key-Pair-Id"))
	}
	var policy []byte
	if p := q.Get("Policy"); p != "" {
		var err error
		if policy, err = cloudFrontB64(p); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf(`{"Statement":[{"Resource":%q,"Condition":{"DateLessThan":{"AWS:EpochTime":%d}}}]}`, resource, expires.Unix())
		if string(policy) != want {
			t.Errorf("custom policy %s, want %s", policy, want)
		}
	} else {
		if q.Get("Expires") != fmt.Sprint(expires.Unix()) {
			t.Errorf("Expires %s, want %d", q.Get("Expires"), expires.Unix())
		}
		policy = fmt.Appendf(nil, `{"Statement":[{"Resource":"%s","Condition":{"DateLessThan":{"AWS:EpochTime":%s}}}]}`, resource, q.Get("Expires"))
	}
	sig, err := cloudFrontB64(q.Get("Signature"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(policy)
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA1, sum[:], sig); err != nil {
		t.Errorf("signature does not verify: %v", err)
	}
	// Negative control: the same signature over another expiry fails.
	other := bytes.Replace(policy, fmt.Append(nil, expires.Unix()), fmt.Append(nil, expires.Unix()+1), 1)
	osum := sha1.Sum(other)
	if rsa.VerifyPKCS1v15(pub, crypto.SHA1, osum[:], sig) == nil {
		t.Error("the signature also verifies another policy")
	}
}

// Downloads through CloudFront are signed URLs for the distribution's URL
// of the key, verified here with the public key as CloudFront does, in
// both policy forms; the private key comes from a file placeholder and
// never shows in the adapted config.
func TestDownloadViaCloudFront(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	for _, tc := range []struct{ policy, pemType string }{{"canned", "RSA PRIVATE KEY"}, {"custom", "PRIVATE KEY"}} {
		t.Run(tc.policy, func(t *testing.T) {
			der := x509.MarshalPKCS1PrivateKey(key)
			if tc.pemType == "PRIVATE KEY" {
				der = pkcs8
			}
			t.Setenv("CU_TEST_CF_KEY", string(pem.EncodeToMemory(&pem.Block{Type: tc.pemType, Bytes: der})))
			s := newSite(t, oneServer(t))
			cfg := s.caddyfile("key files/{uuid}{ext}\n download_ttl 5m\n download_via cloudfront https://d111.cloudfront.net/media {\n key_pair_id K2JCJMDEHXQW5F\n private_key {env.CU_TEST_CF_KEY}\n policy " + tc.policy + "\n }")
			js, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), map[string]any{"filename": "Caddyfile"})
			if err != nil || bytes.Contains(js, []byte("PRIVATE KEY")) || !bytes.Contains(js, []byte("{env.CU_TEST_CF_KEY}")) {
				t.Fatalf("adapted config (%v) must name the key's placeholder, not the key:\n%s", err, js)
			}
			s.load(cfg)
			c := s.confirmFile("alice", "photo.png", "image/png", pngImage(t, 8, 8))
			before := time.Now()
			u := s.location("alice", c.ID)
			resource := "https://d111.cloudfront.net/media/" + c.Key
			if got := u.Scheme + "://" + u.Host + u.Path; got != resource {
				t.Fatalf("signed URL for %s, want %s", got, resource)
			}
			exp := time.Unix(before.Add(5*time.Minute).Unix(), 0)
			if q := u.Query(); q.Get("Expires") != "" && q.Get("Expires") != fmt.Sprint(exp.Unix()) {
				exp = exp.Add(time.Second) // the second turned during the call
			}
			verifyCloudFront(t, u, &key.PublicKey, "K2JCJMDEHXQW5F", resource, exp)
			// The owner policy still applies before any URL is made.
			expectError(t, s.call("bob", "GET", "/"+c.ID+"/download", nil, nil), 404, "not_found")
		})
	}
}

// A public base URL is plain base + key, and only for routes whose
// download policy is public already.
func TestDownloadViaPublicURL(t *testing.T) {
	s := newSite(t, oneServer(t))
	if err := loadCaddyfile(s.caddyfile("download_via public https://files.example.com")); err == nil || !strings.Contains(err.Error(), "needs `download public`") {
		t.Fatalf("public URL on an owner-only route: %v", err)
	}
	s.load(s.caddyfile("download public\n download_via public https://files.example.com/"))
	c := s.confirmFile("alice", "a.txt", "text/plain", []byte("hello"))
	if u := s.location("alice", c.ID); u.String() != "https://files.example.com/"+c.Key {
		t.Errorf("Location %s", u)
	}
}

// Links served by the route: the object streams through Caddy with Range
// and conditional requests; a tampered or expired link is 403, and a link
// dies with its record.
func TestDownloadViaLink(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		t.Setenv("CU_TEST_LINK_SECRET", "link-secret-0123456789abcdef")
		s := newSite(t, srv)
		// The links carry their own credential: the site's authentication
		// leaves them alone, as an operator would configure it.
		cfg := s.caddyfile("download_ttl 3s\n download_via link {\n secret {env.CU_TEST_LINK_SECRET}\n inline image/png\n }")
		s.load(strings.Replace(cfg, "basic_auth {", "@credentials not path_regexp /content$\n\t\tbasic_auth @credentials {", 1))
		body := randomBytes(300 << 10)
		c := s.confirmFile("alice", "data.bin", "application/octet-stream", body)
		png := s.confirmFile("alice", "p.png", "image/png", pngImage(t, 16, 16))
		html := s.confirmFile("alice", "page.html", "text/html", []byte("<html><script>alert(1)</script></html>"))

		get := func(u string, h map[string]string) response {
			t.Helper()
			req := mustRequest(t, "GET", u)
			for k, v := range h {
				req.Header.Set(k, v)
			}
			return do(t, noRedirect, req)
		}
		u := s.location("alice", c.ID)
		if !strings.HasSuffix(u.Path, "/up/"+c.ID+"/content") {
			t.Fatalf("link %s", u.Path)
		}
		link := u.String()

		// The whole file, with no credentials but the link.
		r := get(link, nil)
		if r.StatusCode != 200 || !bytes.Equal(r.body, body) {
			t.Fatalf("link: %d, %d bytes", r.StatusCode, len(r.body))
		}
		etag := r.Header.Get("ETag")
		if etag == "" || !strings.HasPrefix(r.Header.Get("Content-Disposition"), "attachment") || !strings.Contains(r.Header.Get("Cache-Control"), "private, max-age=") {
			t.Errorf("headers: %v", r.Header)
		}
		// A range, an open range, one past the end, and a conditional GET.
		if r := get(link, map[string]string{"Range": "bytes=100-199"}); r.StatusCode != 206 || !bytes.Equal(r.body, body[100:200]) || r.Header.Get("Content-Range") != fmt.Sprintf("bytes 100-199/%d", len(body)) {
			t.Errorf("range: %d %q %d bytes", r.StatusCode, r.Header.Get("Content-Range"), len(r.body))
		}
		if r := get(link, map[string]string{"Range": fmt.Sprintf("bytes=%d-", len(body)-10)}); r.StatusCode != 206 || !bytes.Equal(r.body, body[len(body)-10:]) {
			t.Errorf("open range: %d %d bytes", r.StatusCode, len(r.body))
		}
		if r := get(link, map[string]string{"Range": fmt.Sprintf("bytes=%d-", len(body)+5)}); r.StatusCode != 416 {
			t.Errorf("range past the end: %d", r.StatusCode)
		}
		if r := get(link, map[string]string{"If-None-Match": etag}); r.StatusCode != 304 || len(r.body) != 0 {
			t.Errorf("If-None-Match: %d", r.StatusCode)
		}
		if r := get(link, map[string]string{"If-None-Match": `"other"`}); r.StatusCode != 200 {
			t.Errorf("If-None-Match of another ETag: %d", r.StatusCode)
		}

		// Inline only for the types the route lists; HTML never.
		if r := get(s.location("alice", png.ID).String(), nil); r.StatusCode != 200 || !strings.HasPrefix(r.Header.Get("Content-Disposition"), "inline") {
			t.Errorf("png: %d %q", r.StatusCode, r.Header.Get("Content-Disposition"))
		}
		if r := get(s.location("alice", html.ID).String(), nil); !strings.HasPrefix(r.Header.Get("Content-Disposition"), "attachment") || !strings.Contains(r.Header.Get("Content-Security-Policy"), "sandbox") {
			t.Errorf("html: %q %q", r.Header.Get("Content-Disposition"), r.Header.Get("Content-Security-Policy"))
		}

		// Tampering: another id, expiry or signature.
		q := u.Query()
		for name, bad := range map[string]string{
			"id":        strings.Replace(link, c.ID, png.ID, 1),
			"expiry":    strings.Replace(link, "exp="+q.Get("exp"), fmt.Sprintf("exp=%d", time.Now().Add(time.Hour).Unix()), 1),
			"signature": strings.Replace(link, q.Get("sig"), strings.Repeat("A", len(q.Get("sig"))), 1),
			"none":      s.base + "/up/" + c.ID + "/content",
		} {
			if r := get(bad, nil); r.StatusCode != 403 {
				t.Errorf("tampered %s: %d", name, r.StatusCode)
			}
		}

		// Revocation: the owner deletes the upload; its live link dies at once.
		live := s.location("alice", png.ID).String()
		if r := get(live, nil); r.StatusCode != 200 {
			t.Fatalf("control: %d", r.StatusCode)
		}
		if resp := s.call("alice", "DELETE", "/"+png.ID, nil, nil); resp.StatusCode != 204 {
			t.Fatalf("delete: %d", resp.StatusCode)
		}
		if r := get(live, nil); r.StatusCode != 410 {
			t.Errorf("link after delete: %d", r.StatusCode)
		}

		// Expiry.
		eventually(t, "the link expired", func() bool { return get(link, nil).StatusCode == 403 })
	})
}
