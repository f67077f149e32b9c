package caddyupload

import (
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

// oidcSite is Caddy with upload routes that verify tokens from real Dex
// providers; the routes differ in issuer, audience and claim rules.
type oidcSite struct {
	*testSite
	dex, shortDex *realservers.Dex
	downPort      int
}

func newOIDCSite(t *testing.T) *oidcSite {
	srv := oneServer(t)
	o := &oidcSite{
		testSite: newSite(t, srv),
		dex:      realservers.StartDex(t, realservers.DexOptions{}),
		shortDex: realservers.StartDex(t, realservers.DexOptions{IDTokenTTL: time.Second}),
		downPort: realservers.FreePort(t),
	}
	route := func(path, oidc string) string {
		return fmt.Sprintf(`	handle_path /%[1]s/* {
		upload {
			name %[1]s
			s3 {
				bucket %s
				endpoint %s
				access_key_id {env.CU_TEST_S3_KEY}
				secret_access_key {env.CU_TEST_S3_SECRET}
			}
			ledger %s/ledger.db
			oidc {
%s
			}
		}
	}
`, path, o.bucket, srv.Endpoint, o.dir, oidc)
	}
	cfg := fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	log {
		level ERROR
	}
	storage file_system %s/caddy
}
http://127.0.0.1:%d {
%s%s%s%s%s}
`, o.dir, o.port,
		route("a", "issuer "+o.dex.Issuer+"\n audience caddyupload\n require groups uploaders\n cookie cu_token"),
		route("b", "issuer "+o.dex.Issuer+"\n audience other-app"),
		route("c", "issuer "+o.shortDex.Issuer+"\n audience caddyupload\n leeway 1s"),
		route("d", fmt.Sprintf("issuer http://127.0.0.1:%d/dex\n audience caddyupload", o.downPort)),
		route("e", "issuer "+o.dex.Issuer+"\n audience caddyupload"),
	)
	o.load(cfg)
	return o
}

const createBody = `{"filename":"a.txt","size":3,"type":"text/plain"}`

// send calls route path with the token as bearer (or in the cookie when
// cookie is set) and extra headers.
func (o *oidcSite) send(method, path, token string, cookie bool, body string, headers map[string]string) response {
	o.t.Helper()
	var rd *strings.Reader
	if body != "" {
		rd = strings.NewReader(body)
	} else {
		rd = strings.NewReader("")
	}
	req, err := http.NewRequest(method, o.base+path, rd)
	if err != nil {
		o.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		if cookie {
			req.AddCookie(&http.Cookie{Name: "cu_token", Value: token})
		} else {
			req.Header.Set("Authorization", "Bearer "+token)
		}
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return do(o.t, noRedirect, req)
}

func TestOIDCOnTheRequestPath(t *testing.T) {
	realservers.RealOnly(t, "Dex")
	o := newOIDCSite(t)
	alice := o.dex.Token(t, "alice@example.com", "alice-password")
	bob := o.dex.Token(t, "bob@example.com", "bob-password")

	resp := o.send("POST", "/a/", alice, false, createBody, nil)
	if resp.StatusCode != 201 {
		t.Fatalf("valid token: %d %s", resp.StatusCode, resp.body)
	}
	var c created
	_ = json.Unmarshal(resp.body, &c)

	invalid := map[string]string{
		"garbage":                              "not.a.jwt",
		"tampered signature":                   tamper(alice),
		"alg none":                             algNone(alice),
		"HS256 with the provider's public key": hs256WithPublicKey(t, o.dex, alice),
		"from another issuer":                  o.shortDex.Token(t, "alice@example.com", "alice-password"),
	}
	for name, tok := range invalid {
		t.Run(name, func(t *testing.T) {
			r := o.send("POST", "/a/", tok, false, createBody, nil)
			expectError(t, r.Response, 401, "unauthenticated")
			if h := r.Header.Get("WWW-Authenticate"); h != `Bearer error="invalid_token"` {
				t.Errorf("WWW-Authenticate %q", h)
			}
		})
	}
	t.Run("no token", func(t *testing.T) {
		r := o.send("POST", "/a/", "", false, createBody, nil)
		expectError(t, r.Response, 401, "unauthenticated")
		if h := r.Header.Get("WWW-Authenticate"); h != "Bearer" {
			t.Errorf("WWW-Authenticate %q", h)
		}
	})
	t.Run("wrong audience", func(t *testing.T) {
		expectError(t, o.send("POST", "/b/", alice, false, createBody, nil).Response, 401, "unauthenticated")
	})
	t.Run("expired", func(t *testing.T) {
		tok := o.shortDex.Token(t, "alice@example.com", "alice-password")
		time.Sleep(3 * time.Second) // 1s lifetime + 1s leeway
		expectError(t, o.send("POST", "/c/", tok, false, createBody, nil).Response, 401, "unauthenticated")
	})
	t.Run("claim requirement fails", func(t *testing.T) {
		expectError(t, o.send("POST", "/a/", bob, false, createBody, nil).Response, 403, "forbidden")
	})
	t.Run("another subject's id", func(t *testing.T) {
		var c created
		if r := o.send("POST", "/e/", alice, false, createBody, nil); r.StatusCode != 201 || json.Unmarshal(r.body, &c) != nil {
			t.Fatalf("create on e: %d %s", r.StatusCode, r.body)
		}
		for _, op := range []struct{ method, path string }{
			{"GET", ""}, {"POST", "/complete"}, {"DELETE", ""}, {"GET", "/download"}, {"GET", "/parts"}, {"POST", "/parts"},
		} {
			body := ""
			if op.path == "/parts" && op.method == "POST" {
				body = `{"numbers":[1]}`
			}
			r := o.send(op.method, "/e/"+c.ID+op.path, bob, false, body, nil)
			expectError(t, r.Response, 404, "not_found")
		}
		if r := o.send("GET", "/e/"+c.ID, alice, false, "", nil); r.StatusCode != 200 {
			t.Errorf("owner GET: %d", r.StatusCode)
		}
		// The same owner through another route of the same issuer: 404.
		expectError(t, o.send("GET", "/a/"+c.ID, alice, false, "", nil).Response, 404, "not_found")
	})
	t.Run("cookie", func(t *testing.T) {
		if r := o.send("POST", "/a/", alice, true, createBody, map[string]string{"Sec-Fetch-Site": "same-origin"}); r.StatusCode != 201 {
			t.Errorf("same-origin cookie: %d %s", r.StatusCode, r.body)
		}
		expectError(t, o.send("POST", "/a/", alice, true, createBody, map[string]string{"Sec-Fetch-Site": "cross-site"}).Response, 403, "forbidden")
		expectError(t, o.send("POST", "/a/", alice, true, createBody, map[string]string{"Origin": "https://evil.example"}).Response, 403, "forbidden")
		expectError(t, o.send("DELETE", "/a/"+c.ID, alice, true, "", map[string]string{"Sec-Fetch-Site": "cross-site"}).Response, 403, "forbidden")
		if r := o.send("GET", "/a/"+c.ID, alice, true, "", map[string]string{"Sec-Fetch-Site": "cross-site"}); r.StatusCode != 200 {
			t.Errorf("read-only GET with a cross-site cookie: %d", r.StatusCode)
		}
		// Bearer tokens are not affected by the cross-site rule.
		if r := o.send("POST", "/a/", alice, false, createBody, map[string]string{"Sec-Fetch-Site": "cross-site"}); r.StatusCode != 201 {
			t.Errorf("cross-site bearer: %d", r.StatusCode)
		}
	})
	t.Run("provider down at start, then up", func(t *testing.T) {
		r := o.send("POST", "/d/", alice, false, createBody, nil)
		expectError(t, r.Response, 503, "identity_unavailable")
		if r.Header.Get("Retry-After") == "" {
			t.Error("no Retry-After")
		}
		late := realservers.StartDex(t, realservers.DexOptions{Port: o.downPort})
		tok := late.Token(t, "alice@example.com", "alice-password")
		eventually(t, "recovery after the provider started", func() bool {
			return o.send("POST", "/d/", tok, false, createBody, nil).StatusCode == 201
		})
	})
}

// tamper flips one bit of the token's signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[len(sig)/2] ^= 1
	return parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// algNone re-issues the token's claims unsigned.
func algNone(tok string) string {
	parts := strings.Split(tok, ".")
	return base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
}

// hs256WithPublicKey signs the token's claims with HMAC keyed by the
// provider's RSA public key in PEM: the classic algorithm confusion attack.
func hs256WithPublicKey(t *testing.T, d *realservers.Dex, tok string) string {
	t.Helper()
	resp, err := http.Get(d.Issuer + "/keys")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var jwks struct {
		Keys []struct {
			Kid string `json:"kid"`
			N   string `json:"n"`
			E   string `json:"e"`
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&jwks); err != nil || len(jwks.Keys) == 0 {
		t.Fatalf("jwks: %v", err)
	}
	k := jwks.Keys[0]
	n, _ := base64.RawURLEncoding.DecodeString(k.N)
	e, _ := base64.RawURLEncoding.DecodeString(k.E)
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT","kid":"` + k.Kid + `"}`))
	signing := header + "." + strings.Split(tok, ".")[1]
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}
