package caddyupload

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

// These tests attack the access rules as a caller with a valid account
// would: through another route, another identity source, another origin.

// routesCaddyfile renders a site with one upload route per entry of
// routes (path prefix → policy), all behind basic_auth, on one bucket and
// one ledger.
func (s *testSite) routesCaddyfile(routes map[string]string) string {
	users := s.basicAuthUsers()
	var b strings.Builder
	fmt.Fprintf(&b, "{\n\tadmin off\n\tpersist_config off\n\tauto_https off\n\tstorage file_system %s/caddy\n\thttp_port %d\n}\nhttp://127.0.0.1:%d {\n", s.dir, s.port, s.port)
	for prefix, policy := range routes {
		fmt.Fprintf(&b, "\thandle_path /%s/* {\n\t\tbasic_auth {\n%s\t\t}\n\t\tupload {\n\t\t\ts3 {\n\t\t\t\tbucket %s\n\t\t\t\tendpoint %s\n\t\t\t\taccess_key_id {env.CU_TEST_S3_KEY}\n\t\t\t\tsecret_access_key {env.CU_TEST_S3_SECRET}\n\t\t\t}\n\t\t\tledger %s/ledger.db\n%s\n\t\t}\n\t}\n",
			prefix, users, s.bucket, s.s3.Endpoint, s.dir, policy)
	}
	b.WriteString("}\n")
	return b.String()
}

// send makes one request to the site with extra headers.
func (s *testSite) send(user, method, path, body string, headers map[string]string) response {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if user != "" {
		req.SetBasicAuth(user, testUsers[user])
	}
	return do(s.t, noRedirect, req)
}

// A record belongs to the route that created it: another route, with its
// own policy, neither completes, reads, lists, downloads nor aborts it.
func TestRecordsBelongToTheirRoute(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		s := newSite(t, srv)
		s.load(s.routesCaddyfile(map[string]string{
			"lax":    "name lax\n types text/plain\n max_size 1MiB\n download public",
			"strict": "name strict\n types image/png\n max_size 1KiB\n download public",
		}))
		body := strings.Repeat("x", 2000)
		var c created
		r := s.send("alice", "POST", "/lax/", `{"filename":"a.txt","size":2000,"type":"text/plain"}`, nil)
		if r.StatusCode != 201 || json.Unmarshal(r.body, &c) != nil {
			t.Fatalf("create on lax: %d %s", r.StatusCode, r.body)
		}
		if st := s.put(c, []byte(body), nil); st != 200 {
			t.Fatalf("PUT: %d", st)
		}
		for _, tc := range []struct{ method, path, body string }{
			{"POST", "/strict/" + c.ID + "/complete", ""},
			{"POST", "/strict/complete", `{"key":"` + c.Key + `"}`},
			{"GET", "/strict/" + c.ID, ""},
			{"GET", "/strict/" + c.ID + "/download", ""},
			{"POST", "/strict/s3/multipart/" + c.ID + "/complete?key=" + url.QueryEscape(c.Key), `{"parts":[]}`},
			{"GET", "/strict/s3/multipart/" + c.ID + "?key=" + url.QueryEscape(c.Key), ""},
			{"DELETE", "/strict/" + c.ID, ""},
		} {
			r := s.send("alice", tc.method, tc.path, tc.body, nil)
			expectError(t, r.Response, 404, "not_found")
		}
		// Positive control: the route that created it confirms it, and
		// its download works.
		var rec record
		r = s.send("alice", "POST", "/lax/"+c.ID+"/complete", "", nil)
		if r.StatusCode != 200 || json.Unmarshal(r.body, &rec) != nil || rec.Status != "confirmed" {
			t.Fatalf("complete on lax: %d %s", r.StatusCode, r.body)
		}
		if r := s.send("bob", "GET", "/lax/"+c.ID+"/download", "", nil); r.StatusCode != 302 {
			t.Fatalf("public download on lax: %d", r.StatusCode)
		}
		expectError(t, s.send("bob", "GET", "/strict/"+c.ID+"/download", "", nil).Response, 404, "not_found")
	})
}

// Two routes of one config cannot share a name, given or by default.
func TestDuplicateRouteNamesRefused(t *testing.T) {
	s := newSite(t, oneServer(t))
	for _, routes := range []map[string]string{
		{"a": "name same", "b": "name same"},
		{"a": "key pub/{uuid}", "b": "key pub/{id}"},
		{"a": "", "b": ""},
	} {
		err := loadCaddyfile(s.routesCaddyfile(routes))
		if err == nil || !strings.Contains(err.Error(), "give each upload block its own `name`") {
			t.Errorf("%v: load error %v, want one naming the fix", routes, err)
		}
	}
	// Positive control: distinct names load.
	s.load(s.routesCaddyfile(map[string]string{"a": "", "b": "name other"}))
	if r := s.send("alice", "POST", "/b/", `{"filename":"a.txt","size":1,"type":"text/plain"}`, nil); r.StatusCode != 201 {
		t.Fatalf("create: %d %s", r.StatusCode, r.body)
	}
}

// The same subject name from another identity source is another caller:
// a route that changes from basic_auth to a header set by forward_auth
// does not hand the old users' uploads to whoever the header names.
func TestSubjectsAreNamespacedBySource(t *testing.T) {
	s := newSite(t, oneServer(t))
	s.load(s.caddyfile("name r"))
	c := s.create("alice", "a.txt", 3, "text/plain")

	// The same route, now identifying callers by a header.
	headerRoute := strings.Replace(s.caddyfile("name r\n subject {http.request.header.X-User}"), "basic_auth {", "basic_auth /never {", 1)
	s.load(headerRoute)
	expectError(t, s.send("", "GET", "/up/"+c.ID, "", map[string]string{"X-User": "alice"}).Response, 404, "not_found")
	expectError(t, s.send("", "POST", "/up/", `{"filename":"a.txt","size":1,"type":"text/plain"}`, nil).Response, 401, "unauthenticated")
	var mine created
	r := s.send("", "POST", "/up/", `{"filename":"a.txt","size":1,"type":"text/plain"}`, map[string]string{"X-User": "alice"})
	if r.StatusCode != 201 || json.Unmarshal(r.body, &mine) != nil {
		t.Fatalf("create as the header's user: %d %s", r.StatusCode, r.body)
	}
	if r := s.send("", "GET", "/up/"+mine.ID, "", map[string]string{"X-User": "alice"}); r.StatusCode != 200 {
		t.Fatalf("own record through the header: %d", r.StatusCode)
	}

	// Positive control: back on basic_auth, alice reads her record.
	s.load(s.caddyfile("name r"))
	if r := s.send("alice", "GET", "/up/"+c.ID, "", nil); r.StatusCode != 200 {
		t.Fatalf("own record through basic_auth: %d", r.StatusCode)
	}
}

// Browser-sent credentials (here cached basic auth) change state only from
// the site's own origin, or a trusted one; JSON endpoints take only JSON.
func TestCrossOriginRequestsRefused(t *testing.T) {
	s := newSite(t, oneServer(t))
	s.load(s.caddyfile("trusted_origins https://app.example.com"))
	own := s.base
	otherPort := strings.Replace(own, fmt.Sprint(s.port), fmt.Sprint(s.port+1), 1)
	create := `{"filename":"a.txt","size":1,"type":"text/plain"}`
	for name, tc := range map[string]struct {
		method, path, body, ctype string
		headers                   map[string]string
		status                    int
		code                      string
	}{
		"form-encoded create":            {"POST", "/up/", create, "text/plain", nil, 415, "unsupported_type"},
		"cross-site fetch":               {"POST", "/up/", create, "", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, 403, "forbidden"},
		"same-site other subdomain":      {"POST", "/up/", create, "", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://other.127.0.0.1"}, 403, "forbidden"},
		"older browser, foreign Origin":  {"POST", "/up/", create, "", map[string]string{"Origin": "https://evil.example"}, 403, "forbidden"},
		"same host, other port":          {"POST", "/up/", create, "", map[string]string{"Origin": otherPort}, 403, "forbidden"},
		"opaque origin":                  {"POST", "/up/", create, "", map[string]string{"Origin": "null"}, 403, "forbidden"},
		"Companion params from an img":   {"GET", "/up/s3/params?filename=a.txt&type=text/plain", "", "", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, "forbidden"},
		"same origin":                    {"POST", "/up/", create, "", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": own}, 201, ""},
		"older browser, own Origin":      {"POST", "/up/", create, "", map[string]string{"Origin": own}, 201, ""},
		"a program (no browser headers)": {"POST", "/up/", create, "", nil, 201, ""},
		"trusted origin":                 {"POST", "/up/", create, "", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://app.example.com"}, 201, ""},
		"same-origin Companion params":   {"GET", "/up/s3/params?filename=a.txt&type=text/plain", "", "", map[string]string{"Sec-Fetch-Site": "same-origin"}, 200, ""},
	} {
		h := map[string]string{}
		for k, v := range tc.headers {
			h[k] = v
		}
		r := s.send("alice", tc.method, tc.path, tc.body, h)
		if tc.ctype != "" {
			req, _ := http.NewRequest(tc.method, s.base+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.ctype)
			req.SetBasicAuth("alice", testUsers["alice"])
			r = do(t, noRedirect, req)
		}
		if tc.code != "" {
			t.Run(name, func(t *testing.T) { expectError(t, r.Response, tc.status, tc.code) })
		} else if r.StatusCode != tc.status {
			t.Errorf("%s: %d %s, want %d", name, r.StatusCode, r.body, tc.status)
		}
	}
}

// Filenames with invisible formatting characters (a right-to-left
// override that turns "gpj.exe" around) are refused.
func TestFormatCharactersInFilenamesRefused(t *testing.T) {
	s := newSite(t, oneServer(t))
	s.load(s.caddyfile(""))
	expectError(t, s.call("alice", "POST", "/", map[string]any{"filename": "invoice\u202Egpj.exe", "size": 1, "type": "application/octet-stream"}, nil), 400, "invalid_request")
	s.create("alice", "invoice.jpg.exe", 1, "application/octet-stream")
}

// A route whose max_size is over S3's 5 GiB POST limit still hands Uppy a
// usable POST policy, capped at 5 GiB.
func TestCompanionParamsCapAtFiveGiB(t *testing.T) {
	s := newSite(t, oneServer(t))
	s.load(s.caddyfile("max_size 10GiB"))
	var p struct {
		URL    string            `json:"url"`
		Fields map[string]string `json:"fields"`
	}
	if resp := s.call("alice", "GET", "/s3/params?filename=a.txt&type=text/plain", nil, &p); resp.StatusCode != 200 {
		t.Fatalf("params: %d", resp.StatusCode)
	}
	raw, err := base64.StdEncoding.DecodeString(p.Fields["policy"])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `["content-length-range",1,5368709120]`) {
		t.Errorf("policy %s: want content-length-range 1..5GiB", raw)
	}
	if st := postForm(t, created{URL: p.URL, Fields: p.Fields}, []byte("hello")); st >= 300 {
		t.Fatalf("form upload under the capped policy: %d", st)
	}
}

// Behind a proxy that terminates TLS, the site's origin is the one the
// proxy reports, believed only when Caddy trusts the proxy.
func TestForwardedOriginOnlyFromTrustedProxies(t *testing.T) {
	s := newSite(t, oneServer(t))
	create := `{"filename":"a.txt","size":1,"type":"text/plain"}`
	behindProxy := map[string]string{"Origin": "https://uploads.example.com", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "uploads.example.com"}

	// Caddy does not trust the sender: its X-Forwarded-* are ignored, and
	// the page's origin is not the site's.
	s.load(s.caddyfile(""))
	expectError(t, s.send("alice", "POST", "/up/", create, behindProxy).Response, 403, "forbidden")

	// Trusted: the same request is same-origin.
	trusted := strings.Replace(s.caddyfile("name up2"), "auto_https off", "auto_https off\n\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}", 1)
	s.load(trusted)
	if r := s.send("alice", "POST", "/up/", create, behindProxy); r.StatusCode != 201 {
		t.Fatalf("through a trusted proxy: %d %s", r.StatusCode, r.body)
	}
}
