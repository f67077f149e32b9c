package embedded

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddyupload/caddyupload/storage"
	"github.com/caddyupload/caddyupload/storage/s3store"
)

// upstream records what reaches the storage server's address.
type upstream struct {
	mu   sync.Mutex
	reqs []seen
	srv  *httptest.Server
}

type seen struct {
	method, host, requestURI, body string
	header                         http.Header
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, seen{r.Method, r.Host, r.RequestURI, string(body), r.Header.Clone()})
		u.mu.Unlock()
		w.Header().Set("ETag", `"e"`)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) last(t *testing.T) seen {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("nothing reached the storage server")
	}
	return u.reqs[len(u.reqs)-1]
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// testSigner holds the credentials of the tests' storage server.
var testSigner = signer{accessKeyID: "TESTKEY0123456789", secret: "test-secret-0123456789", region: "us-east-1"}

func testHandler(t *testing.T, listen string) *Handler {
	h := &Handler{logger: zap.NewNop()}
	h.setup("caddyupload", listen, testSigner)
	t.Cleanup(func() { _ = h.Cleanup() })
	return h
}

// presigner signs as the upload handler does, for the tests' server.
func presigner(t *testing.T) *s3store.Store {
	t.Helper()
	st, err := s3store.New(context.Background(), s3store.Config{
		Endpoint: "http://127.0.0.1:1", Bucket: "caddyupload", Region: testSigner.region,
		AccessKeyID: testSigner.accessKeyID, SecretAccessKey: testSigner.secret, UsePathStyle: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// presignedPut is a presigned PUT of key through site.example:8443, as
// the upload handler hands it to browsers.
func presignedPut(t *testing.T, key string, size int64, typ string) storage.SignedRequest {
	t.Helper()
	sr, err := presigner(t).PresignPut(context.Background(), storage.PutInput{Key: key, Size: size, ContentType: typ, TTL: time.Minute},
		storage.Origin{Scheme: "https", Host: "site.example:8443"})
	if err != nil {
		t.Fatal(err)
	}
	return sr
}

// signedQuery is the query of a presigned request.
func signedQuery(t *testing.T) string {
	t.Helper()
	u, _ := url.Parse(presignedPut(t, "k.png", 1, "image/png").URL)
	return "?" + u.RawQuery
}

// serve runs r through h and reports whether the next handler ran.
func serve(h *Handler, r *http.Request) (*httptest.ResponseRecorder, bool) {
	w := httptest.NewRecorder()
	nextRan := false
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		nextRan = true
		w.WriteHeader(http.StatusTeapot)
		return nil
	})
	if err := h.ServeHTTP(w, r, next); err != nil {
		w.WriteHeader(http.StatusInternalServerError)
	}
	return w, nextRan
}

func TestHandlerRouting(t *testing.T) {
	up := newUpstream(t)
	h := testHandler(t, up.srv.Listener.Addr().String())
	signedQuery := signedQuery(t)

	unsignedForm := formRequest(t, []field{{"key", "k.png"}}, "x")
	preflight := func(acrm string) *http.Request {
		r := httptest.NewRequest(http.MethodOptions, "http://site.example/caddyupload/k.png", nil)
		r.Header.Set("Origin", "https://app.example")
		if acrm != "" {
			r.Header.Set("Access-Control-Request-Method", acrm)
		}
		return r
	}
	headerSigned := httptest.NewRequest(http.MethodGet, "http://site.example/caddyupload/k.png", nil)
	headerSigned.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=K/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=abc")
	jsonPost := httptest.NewRequest(http.MethodPost, "http://site.example/caddyupload", strings.NewReader("{}"))
	jsonPost.Header.Set("Content-Type", "application/json")
	// What the server's HTTP library would parse into memory before any
	// signature check.
	multipartPut := httptest.NewRequest(http.MethodPut, "http://site.example/caddyupload/k.png"+signedQuery, strings.NewReader("--b--\r\n"))
	multipartPut.Header.Set("Content-Type", "multipart/form-data; boundary=b")
	secondType := httptest.NewRequest(http.MethodPut, "http://site.example/caddyupload/k.png"+signedQuery, strings.NewReader("x"))
	secondType.Header["Content-Type"] = []string{"image/png", "multipart/form-data; boundary=b"}
	mhtml := httptest.NewRequest(http.MethodPut, "http://site.example/caddyupload/page.mht"+signedQuery, strings.NewReader("x"))
	mhtml.Header.Set("Content-Type", "multipart/related; boundary=b")
	multipartPreflight := preflight("PUT")
	multipartPreflight.Header.Set("Content-Type", "Multipart/Form-Data; boundary=b")
	// Query credentials that cannot be the server's.
	replace := func(name, value string) *http.Request {
		q, _ := url.ParseQuery(signedQuery[1:])
		q.Set(name, value)
		return httptest.NewRequest(http.MethodGet, "http://site.example/caddyupload/k.png?"+q.Encode(), nil)
	}
	repeated := httptest.NewRequest(http.MethodGet, "http://site.example/caddyupload/k.png"+signedQuery+"&X-Amz-Expires=60", nil)

	for _, tc := range []struct {
		name    string
		req     *http.Request
		outcome string // next, proxied, refused (403), unsupported (415)
	}{
		{"other path", httptest.NewRequest(http.MethodGet, "http://site.example/index.html", nil), "next"},
		{"longer name", httptest.NewRequest(http.MethodGet, "http://site.example/caddyuploads/k.png"+signedQuery, nil), "next"},
		{"unsigned object", httptest.NewRequest(http.MethodGet, "http://site.example/caddyupload/k.png", nil), "refused"},
		{"unsigned bucket", httptest.NewRequest(http.MethodGet, "http://site.example/caddyupload", nil), "refused"},
		{"unsigned put", httptest.NewRequest(http.MethodPut, "http://site.example/caddyupload/k.png", strings.NewReader("x")), "refused"},
		{"header signed", headerSigned, "refused"},
		{"signature only", httptest.NewRequest(http.MethodGet, "http://site.example/caddyupload/k.png?X-Amz-Signature=abc", nil), "refused"},
		{"presigned get", httptest.NewRequest(http.MethodGet, "http://site.example/caddyupload/k.png"+signedQuery, nil), "proxied"},
		{"other access key", replace("X-Amz-Credential", "OTHERKEY/"+time.Now().UTC().Format("20060102")+"/us-east-1/s3/aws4_request"), "refused"},
		{"other region", replace("X-Amz-Credential", testSigner.accessKeyID+"/"+time.Now().UTC().Format("20060102")+"/eu-west-1/s3/aws4_request"), "refused"},
		{"expired", replace("X-Amz-Date", time.Now().UTC().Add(-time.Hour).Format(amzDate)), "refused"},
		{"signed in the future", replace("X-Amz-Date", time.Now().UTC().Add(time.Hour).Format(amzDate)), "refused"},
		{"expiry beyond a week", replace("X-Amz-Expires", "604801"), "refused"},
		{"malformed signature", replace("X-Amz-Signature", "abc"), "refused"},
		{"host not signed", replace("X-Amz-SignedHeaders", "content-type"), "refused"},
		{"repeated parameter", repeated, "refused"},
		{"unsigned form", unsignedForm, "refused"},
		{"presigned put with a multipart body", multipartPut, "unsupported"},
		{"second content type", secondType, "unsupported"},
		{"presigned put of an MHTML file", mhtml, "proxied"},
		{"preflight with a multipart body", multipartPreflight, "unsupported"},
		{"post not a form", jsonPost, "refused"},
		{"preflight", preflight("PUT"), "proxied"},
		{"options without preflight", preflight(""), "refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := up.count()
			w, nextRan := serve(h, tc.req)
			proxied := up.count() > before
			switch tc.outcome {
			case "next":
				if !nextRan || proxied {
					t.Fatalf("next ran %v, proxied %v; want next only", nextRan, proxied)
				}
			case "proxied":
				if nextRan || !proxied || w.Code != http.StatusOK {
					t.Fatalf("next ran %v, proxied %v, status %d; want proxied", nextRan, proxied, w.Code)
				}
			case "refused", "unsupported":
				status, code := http.StatusForbidden, "forbidden"
				if tc.outcome == "unsupported" {
					status, code = http.StatusUnsupportedMediaType, "unsupported_type"
				}
				if nextRan || proxied || w.Code != status {
					t.Fatalf("next ran %v, proxied %v, status %d; want %d", nextRan, proxied, w.Code, status)
				}
				var body struct {
					Error struct{ Code string } `json:"error"`
				}
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error.Code != code {
					t.Fatalf("body %q, want a JSON %s error", w.Body.String(), code)
				}
			}
		})
	}
}

func TestHandlerForwardsWhatTheSignatureCovers(t *testing.T) {
	up := newUpstream(t)
	h := testHandler(t, up.srv.Listener.Addr().String())
	sr := presignedPut(t, "dir/a b+c.txt", 5, "text/plain")
	uri := strings.TrimPrefix(sr.URL, "https://site.example:8443")
	r := httptest.NewRequest(http.MethodPut, sr.URL, strings.NewReader("hello"))
	r.Header.Set("Content-Type", "text/plain")
	r.Header.Set("Authorization", "Basic YWxpY2U6c2VjcmV0")
	r.Header.Set("Cookie", "session=s")
	w, _ := serve(h, r)
	if w.Code != http.StatusOK || w.Header().Get("ETag") != `"e"` {
		t.Fatalf("status %d, ETag %q", w.Code, w.Header().Get("ETag"))
	}
	got := up.last(t)
	if got.host != "site.example:8443" {
		t.Errorf("Host %q, want the browser's", got.host)
	}
	if got.requestURI != uri {
		t.Errorf("request URI %q, want %q unchanged", got.requestURI, uri)
	}
	if got.body != "hello" || got.header.Get("Content-Type") != "text/plain" {
		t.Errorf("body %q, type %q", got.body, got.header.Get("Content-Type"))
	}
	for _, name := range []string{"Authorization", "Cookie", "X-Forwarded-For"} {
		if v := got.header.Get(name); v != "" {
			t.Errorf("%s reached the storage server: %q", name, v)
		}
	}
}

// TestHandlerStreamsBody sends the second half of a body only after the
// storage server has received the first: a proxy that buffers bodies never
// gets there.
func TestHandlerStreamsBody(t *testing.T) {
	firstHalf := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 5)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			t.Errorf("first half: %v", err)
		}
		close(firstHalf)
		rest, _ := io.ReadAll(r.Body)
		_, _ = w.Write(append(buf, rest...))
	}))
	defer srv.Close()
	h := testHandler(t, srv.Listener.Addr().String())

	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	}))
	defer site.Close()

	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write([]byte("hello"))
		select {
		case <-firstHalf:
			_, _ = pw.Write([]byte(" world"))
			_ = pw.Close()
		case <-time.After(30 * time.Second):
			_ = pw.CloseWithError(io.ErrUnexpectedEOF)
		}
	}()
	req, _ := http.NewRequest(http.MethodPut, site.URL+"/caddyupload/k.txt"+signedQuery(t), pr)
	req.ContentLength = 11
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "hello world" {
		t.Fatalf("storage server got %q; the body was not streamed", body)
	}
}

func TestHandlerStorageDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	h := testHandler(t, addr)
	w, _ := serve(h, httptest.NewRequest(http.MethodGet, "http://site.example/caddyupload/k"+signedQuery(t), nil))
	if w.Code != http.StatusBadGateway || !strings.Contains(w.Body.String(), "storage_unavailable") {
		t.Fatalf("status %d body %q, want 502 storage_unavailable", w.Code, w.Body.String())
	}
	if strings.Contains(w.Body.String(), "X-Amz") {
		t.Error("the error body quotes the presigned URL")
	}
}

// TestHandlerForwardsTheSignedHost: behind a trusted proxy that renames the
// site, the browser signed for X-Forwarded-Host, which the server must see
// as Host; from anyone else, X-Forwarded-Host is ignored.
func TestHandlerForwardsTheSignedHost(t *testing.T) {
	up := newUpstream(t)
	h := testHandler(t, up.srv.Listener.Addr().String())
	for _, tc := range []struct {
		name    string
		trusted bool
		fwd     string
		want    string
	}{
		{"trusted proxy", true, "files.example.com", "files.example.com"},
		{"trusted proxy chain", true, "files.example.com:8443, internal", "files.example.com:8443"},
		{"trusted proxy, malformed", true, "files.example.com/x", "internal:8080"},
		{"trusted proxy, none", true, "", "internal:8080"},
		{"untrusted client", false, "files.example.com", "internal:8080"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "http://internal:8080/caddyupload/k.png"+signedQuery(t), nil)
			r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.TrustedProxyVarKey: tc.trusted}))
			if tc.fwd != "" {
				r.Header.Set("X-Forwarded-Host", tc.fwd)
			}
			if w, _ := serve(h, r); w.Code != http.StatusOK {
				t.Fatalf("status %d", w.Code)
			}
			if got := up.last(t).host; got != tc.want {
				t.Fatalf("Host %q reached the server, want %q", got, tc.want)
			}
		})
	}
}
