package embedded

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
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

func testHandler(t *testing.T, listen string) *Handler {
	h := &Handler{logger: zap.NewNop()}
	h.setup("caddyupload", listen)
	t.Cleanup(func() { _ = h.Cleanup() })
	return h
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

const signedQuery = "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=K%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost&X-Amz-Signature=abc"

func TestHandlerRouting(t *testing.T) {
	up := newUpstream(t)
	h := testHandler(t, up.srv.Listener.Addr().String())

	form := func() *http.Request {
		r := httptest.NewRequest(http.MethodPost, "http://site.example/caddyupload", strings.NewReader("--b--\r\n"))
		r.Header.Set("Content-Type", "multipart/form-data; boundary=b")
		return r
	}
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

	for _, tc := range []struct {
		name    string
		req     *http.Request
		outcome string // next, proxied, refused
	}{
		{"other path", httptest.NewRequest(http.MethodGet, "http://site.example/index.html", nil), "next"},
		{"longer name", httptest.NewRequest(http.MethodGet, "http://site.example/caddyuploads/k.png"+signedQuery, nil), "next"},
		{"unsigned object", httptest.NewRequest(http.MethodGet, "http://site.example/caddyupload/k.png", nil), "refused"},
		{"unsigned bucket", httptest.NewRequest(http.MethodGet, "http://site.example/caddyupload", nil), "refused"},
		{"unsigned put", httptest.NewRequest(http.MethodPut, "http://site.example/caddyupload/k.png", strings.NewReader("x")), "refused"},
		{"header signed", headerSigned, "refused"},
		{"signature only", httptest.NewRequest(http.MethodGet, "http://site.example/caddyupload/k.png?X-Amz-Signature=abc", nil), "refused"},
		{"presigned get", httptest.NewRequest(http.MethodGet, "http://site.example/caddyupload/k.png"+signedQuery, nil), "proxied"},
		{"post form", form(), "proxied"},
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
			case "refused":
				if nextRan || proxied || w.Code != http.StatusForbidden {
					t.Fatalf("next ran %v, proxied %v, status %d; want 403", nextRan, proxied, w.Code)
				}
				var body struct {
					Error struct{ Code string } `json:"error"`
				}
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error.Code != "forbidden" {
					t.Fatalf("body %q, want a JSON forbidden error", w.Body.String())
				}
			}
		})
	}
}

func TestHandlerForwardsWhatTheSignatureCovers(t *testing.T) {
	up := newUpstream(t)
	h := testHandler(t, up.srv.Listener.Addr().String())
	uri := "/caddyupload/dir/a%20b%2Bc.txt" + signedQuery
	r := httptest.NewRequest(http.MethodPut, "https://site.example:8443"+uri, strings.NewReader("hello"))
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
	req, _ := http.NewRequest(http.MethodPut, site.URL+"/caddyupload/k.txt"+signedQuery, pr)
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
	w, _ := serve(h, httptest.NewRequest(http.MethodGet, "http://site.example/caddyupload/k"+signedQuery, nil))
	if w.Code != http.StatusBadGateway || !strings.Contains(w.Body.String(), "storage_unavailable") {
		t.Fatalf("status %d body %q, want 502 storage_unavailable", w.Code, w.Body.String())
	}
	if strings.Contains(w.Body.String(), "X-Amz") {
		t.Error("the error body quotes the presigned URL")
	}
}
