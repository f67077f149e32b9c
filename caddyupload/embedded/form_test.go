package embedded

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage"

	"github.com/caddyupload/caddyupload/storage/s3store"
)

type field struct{ name, value string }

// formBody is a browser's form: the fields in order, then the file.
func formBody(t *testing.T, fields []field, file string) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for _, f := range fields {
		if err := mw.WriteField(f.name, f.value); err != nil {
			t.Fatal(err)
		}
	}
	fw, err := mw.CreateFormFile("file", "note.txt")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(fw, file)
	_ = mw.Close()
	return b.Bytes(), mw.FormDataContentType()
}

func formRequest(t *testing.T, fields []field, file string) *http.Request {
	t.Helper()
	body, typ := formBody(t, fields, file)
	r := httptest.NewRequest(http.MethodPost, "http://site.example/caddyupload", bytes.NewReader(body))
	r.Header.Set("Content-Type", typ)
	return r
}

// signedFields is a POST policy form from the upload handler's presigner
// for a file of 1 to max bytes, in the order a browser sends them.
func signedFields(t *testing.T, max int64) []field {
	t.Helper()
	sr, err := presigner(t).PresignPost(context.Background(), storage.PostInput{
		Key: "dir/note.txt", MinSize: 1, MaxSize: max, ContentType: "text/plain", TTL: time.Minute,
	}, storage.Origin{Scheme: "http", Host: "site.example"})
	if err != nil {
		t.Fatal(err)
	}
	var out []field
	for _, name := range []string{"key", "Content-Type", "policy", "x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature"} {
		out = append(out, field{name, sr.Fields[name]})
	}
	return out
}

func with(fields []field, name, value string) []field {
	out := append([]field(nil), fields...)
	for i := range out {
		if out[i].name == name {
			out[i].value = value
			return out
		}
	}
	return append(out, field{name, value})
}

func without(fields []field, name string) []field {
	var out []field
	for _, f := range fields {
		if f.name != name {
			out = append(out, f)
		}
	}
	return out
}

// editPolicy is the policy of fields, edited.
func editPolicy(t *testing.T, fields []field, edit func(map[string]any)) string {
	t.Helper()
	var policy string
	for _, f := range fields {
		if f.name == "policy" {
			policy = f.value
		}
	}
	raw, _ := base64.StdEncoding.DecodeString(policy)
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	edit(doc)
	raw, _ = json.Marshal(doc)
	return base64.StdEncoding.EncodeToString(raw)
}

// resign edits the policy of fields and signs it again.
func resign(t *testing.T, fields []field, edit func(map[string]any)) []field {
	t.Helper()
	policy := editPolicy(t, fields, edit)
	day := time.Now().UTC().Format("20060102")
	sig := s3store.PolicySignature(testSigner.secret, day, testSigner.region, policy)
	return with(with(fields, "policy", policy), "x-amz-signature", hexString(sig))
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func TestFormVerification(t *testing.T) {
	up := newUpstream(t)
	h := testHandler(t, up.srv.Listener.Addr().String())
	signed := signedFields(t, 100)
	tampered := []byte(signed[6].value)
	tampered[0] ^= 1
	if tampered[0] > 'f' || tampered[0] < '0' {
		tampered[0] = '0'
	}

	lfOnly := func() *http.Request {
		body, typ := formBody(t, signed, "hello")
		body = bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n"))
		r := httptest.NewRequest(http.MethodPost, "http://site.example/caddyupload", bytes.NewReader(body))
		r.Header.Set("Content-Type", typ)
		return r
	}
	chunked := formRequest(t, signed, "hello")
	chunked.ContentLength = -1
	twoTypes := formRequest(t, signed, "hello")
	twoTypes.Header.Add("Content-Type", "text/plain")
	quotedBoundary := formRequest(t, signed, "hello")
	quotedBoundary.Header.Set("Content-Type", strings.Replace(quotedBoundary.Header.Get("Content-Type"), "boundary=", `boundary="a b"`+"; x=", 1))
	fileFirst := func() *http.Request {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		fw, _ := mw.CreateFormFile("file", "note.txt")
		_, _ = io.WriteString(fw, "hello")
		for _, f := range signed {
			_ = mw.WriteField(f.name, f.value)
		}
		_ = mw.Close()
		r := httptest.NewRequest(http.MethodPost, "http://site.example/caddyupload", &b)
		r.Header.Set("Content-Type", mw.FormDataContentType())
		return r
	}

	for _, tc := range []struct {
		name   string
		req    *http.Request
		status int
		code   string
	}{
		{"signed", formRequest(t, signed, "hello"), http.StatusOK, ""},
		{"trailing slash", func() *http.Request {
			r := formRequest(t, signed, "hello")
			r.URL.Path = "/caddyupload/"
			return r
		}(), http.StatusOK, ""},
		{"unsigned", formRequest(t, []field{{"key", "dir/note.txt"}}, "hello"), http.StatusForbidden, "forbidden"},
		{"no signature", formRequest(t, without(signed, "x-amz-signature"), "hello"), http.StatusForbidden, "forbidden"},
		{"tampered signature", formRequest(t, with(signed, "x-amz-signature", string(tampered)), "hello"), http.StatusForbidden, "forbidden"},
		{"tampered policy", formRequest(t, with(signed, "policy", editPolicy(t, signed, func(d map[string]any) {
			d["expiration"] = time.Now().UTC().Add(time.Hour).Format("2006-01-02T15:04:05.000Z")
		})), "hello"), http.StatusForbidden, "forbidden"},
		{"other key", formRequest(t, with(signed, "x-amz-credential", strings.Replace(signed[4].value, testSigner.accessKeyID, "OTHERKEY", 1)), "hello"), http.StatusForbidden, "forbidden"},
		{"other algorithm", formRequest(t, with(signed, "x-amz-algorithm", "AWS4-HMAC-SHA1"), "hello"), http.StatusForbidden, "forbidden"},
		{"expired", formRequest(t, resign(t, signed, func(d map[string]any) {
			d["expiration"] = time.Now().UTC().Add(-time.Second).Format("2006-01-02T15:04:05.000Z")
		}), "hello"), http.StatusForbidden, "forbidden"},
		{"file over the signed range", formRequest(t, signed, strings.Repeat("x", 101)), http.StatusRequestEntityTooLarge, "too_large"},
		{"fields after the file", fileFirst(), http.StatusForbidden, "forbidden"},
		{"repeated field", formRequest(t, append(signed, field{"x-amz-signature", signed[6].value}), "hello"), http.StatusBadRequest, "invalid_request"},
		{"lines without CR", lfOnly(), http.StatusBadRequest, "invalid_request"},
		{"field too large", formRequest(t, with(signed, "policy", strings.Repeat("A", maxFormLine+1)), "hello"), http.StatusRequestEntityTooLarge, "too_large"},
		{"too many fields", formRequest(t, func() []field {
			out := signed
			for i := range 200 {
				out = append(out, field{"x-amz-meta-" + strings.Repeat("m", 3) + string(rune('a'+i%26)) + string(rune('a'+i/26)), strings.Repeat("v", 500)})
			}
			return out
		}(), "hello"), http.StatusRequestEntityTooLarge, "too_large"},
		{"no length", chunked, http.StatusLengthRequired, "invalid_request"},
		{"two content types", twoTypes, http.StatusBadRequest, "invalid_request"},
		{"unusual boundary", quotedBoundary, http.StatusBadRequest, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.req.Body != nil {
				body, _ = io.ReadAll(tc.req.Body)
				tc.req.Body = io.NopCloser(bytes.NewReader(body))
			}
			before := up.count()
			w, _ := serve(h, tc.req)
			proxied := up.count() > before
			if w.Code != tc.status {
				t.Fatalf("status %d %s, want %d", w.Code, w.Body.String(), tc.status)
			}
			if tc.status == http.StatusOK {
				got := up.last(t)
				if !proxied || got.body != string(body) {
					t.Fatalf("the server got %q, want the form unchanged", got.body)
				}
				if got.header.Get("Content-Type") != tc.req.Header.Get("Content-Type") {
					t.Errorf("Content-Type %q, want %q", got.header.Get("Content-Type"), tc.req.Header.Get("Content-Type"))
				}
				return
			}
			if proxied {
				t.Fatal("a refused form reached the server")
			}
			var e struct {
				Error struct{ Code string } `json:"error"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error.Code != tc.code {
				t.Fatalf("body %q, want a JSON %s error", w.Body.String(), tc.code)
			}
		})
	}
}

// countingReader serves head, then filler forever, counting what is read.
type countingReader struct {
	head []byte
	n    atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	off := c.n.Load()
	var n int
	if off < int64(len(c.head)) {
		n = copy(p, c.head[off:])
	} else {
		for i := range p {
			p[i] = 'A'
		}
		n = len(p)
	}
	c.n.Add(int64(n))
	return n, nil
}

// TestFormReadsBoundedBytes sends unsigned forms with an endless field:
// the handler gives up after a bounded number of bytes, whatever the
// Content-Length claims, and a signed form still passes (control).
func TestFormReadsBoundedBytes(t *testing.T) {
	up := newUpstream(t)
	h := testHandler(t, up.srv.Listener.Addr().String())
	for _, name := range []string{"policy", "x-amz-meta-note"} {
		for _, line := range []string{"one line", "many lines"} {
			sep := ""
			if line == "many lines" {
				sep = "\r\n"
			}
			head := "--b\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n\r\n" + sep
			body := &countingReader{head: []byte(head)}
			if sep != "" {
				body = &countingReader{head: []byte(head + strings.Repeat(strings.Repeat("A", 100)+"\r\n", 1<<14))}
			}
			r := httptest.NewRequest(http.MethodPost, "http://site.example/caddyupload", body)
			r.ContentLength = 1 << 30
			r.Header.Set("Content-Type", "multipart/form-data; boundary=b")
			w, _ := serve(h, r)
			if w.Code != http.StatusRequestEntityTooLarge {
				t.Errorf("%s, %s: status %d, want 413", name, line, w.Code)
			}
			if n := body.n.Load(); n > maxFormHead+2*maxFormLine {
				t.Errorf("%s, %s: read %d bytes, want at most %d", name, line, n, maxFormHead+2*maxFormLine)
			}
		}
	}
	if up.count() != 0 {
		t.Fatal("an unsigned form reached the server")
	}
	if w, _ := serve(h, formRequest(t, signedFields(t, 100), "hello")); w.Code != http.StatusOK || up.count() != 1 {
		t.Fatalf("signed form: status %d, proxied %d", w.Code, up.count())
	}
}

// TestFormVerificationSlots fills every verification slot: the next form
// is answered 503 at once; once a slot is free, it passes.
func TestFormVerificationSlots(t *testing.T) {
	up := newUpstream(t)
	h := testHandler(t, up.srv.Listener.Addr().String())
	for range maxVerifying {
		h.verifying <- struct{}{}
	}
	w, _ := serve(h, formRequest(t, signedFields(t, 100), "hello"))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || up.count() != 0 {
		t.Fatalf("status %d, Retry-After %q, proxied %d; want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"), up.count())
	}
	<-h.verifying
	if w, _ := serve(h, formRequest(t, signedFields(t, 100), "hello")); w.Code != http.StatusOK || up.count() != 1 {
		t.Fatalf("with a free slot: status %d, proxied %d", w.Code, up.count())
	}
	if len(h.verifying) != maxVerifying-1 {
		t.Fatalf("%d slots held after the form passed, want %d", len(h.verifying), maxVerifying-1)
	}
}

// TestFormSlowClient sends the start of a form and stalls: the handler
// answers 408 once formReadTimeout has passed and frees the slot; a form
// sent at once passes (control).
func TestFormSlowClient(t *testing.T) {
	up := newUpstream(t)
	h := testHandler(t, up.srv.Listener.Addr().String())
	formReadTimeout = 300 * time.Millisecond
	t.Cleanup(func() { formReadTimeout = 15 * time.Second })
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = h.ServeHTTP(w, r, nil)
	}))
	defer site.Close()

	body, typ := formBody(t, signedFields(t, 100), "hello")
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = pw.Write(body[:40]) }()
	req, _ := http.NewRequest(http.MethodPost, site.URL+"/caddyupload", pr)
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", typ)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || time.Since(start) > 10*time.Second {
		t.Fatalf("stalled form: %d after %s, want 408 after about %s", resp.StatusCode, time.Since(start), formReadTimeout)
	}
	if len(h.verifying) != 0 || up.count() != 0 {
		t.Fatalf("%d slots held, %d requests proxied after a stalled form", len(h.verifying), up.count())
	}

	resp, err = http.Post(site.URL+"/caddyupload", typ, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || up.count() != 1 {
		t.Fatalf("form sent at once: %d, proxied %d", resp.StatusCode, up.count())
	}
}
