package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"maps"
	"mime/multipart"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// browser plays the client: a plain net/http client that knows nothing of
// S3 and sends exactly what the presigned request says (or, in the refusal
// cases, what a lying client would).
var browser = &http.Client{
	Timeout:   2 * time.Minute,
	Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second},
}

// response is what the suite keeps of an answer. Bodies of error answers
// carry the S3 error code; presigned URLs are never printed.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) ok() bool { return r.status >= 200 && r.status < 300 }

func (r response) refused() bool { return r.status >= 400 && r.status < 500 }

// send sends body with every header of sr except those edit removes or
// changes; Content-Length is always the real body length.
func send(t *testing.T, sr storage.SignedRequest, body []byte, edit func(*http.Request)) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := newRequest(ctx, sr, body)
	if err != nil {
		t.Fatalf("build %s request: %v", sr.Method, err)
	}
	if edit != nil {
		edit(req)
	}
	return do(t, req)
}

// newRequest is sr with body; Content-Length is the body's own length, as
// browsers send it.
func newRequest(ctx context.Context, sr storage.SignedRequest, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, sr.Method, sr.URL, bytes.NewReader(body))
	if err != nil {
		return nil, redact(err)
	}
	for k, v := range sr.Headers {
		if http.CanonicalHeaderKey(k) != "Content-Length" {
			req.Header.Set(k, v)
		}
	}
	return req, nil
}

// postForm sends a multipart form with fields (in order) and the file last,
// as S3 requires.
func postForm(t *testing.T, sr storage.SignedRequest, fields [][2]string, file []byte) response {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, f := range fields {
		if err := w.WriteField(f[0], f[1]); err != nil {
			t.Fatal(err)
		}
	}
	fw, err := w.CreateFormFile("file", "upload.bin")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(file)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sr.URL, &buf)
	if err != nil {
		t.Fatalf("build POST request: %v", err)
	}
	req.Header.Set("Content-Type", w.FormDataContentType())
	return do(t, req)
}

// formFields is sr.Fields in a fixed order with overrides applied; a nil
// override value removes the field.
func formFields(sr storage.SignedRequest, override map[string]*string) [][2]string {
	var out [][2]string
	for _, k := range slices.Sorted(maps.Keys(sr.Fields)) {
		v := sr.Fields[k]
		if o, ok := override[k]; ok {
			if o == nil {
				continue
			}
			v = *o
		}
		out = append(out, [2]string{k, v})
	}
	for k, v := range override {
		if _, ok := sr.Fields[k]; !ok && v != nil {
			out = append(out, [2]string{k, *v})
		}
	}
	return out
}

func do(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := browser.Do(req)
	if err != nil {
		// The error text holds the URL, a credential: print the method only.
		t.Fatalf("%s to object storage failed: %v", req.Method, redact(err))
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// redact drops the URL from a *url.Error.
func redact(err error) error {
	type unwrapper interface{ Unwrap() error }
	if u, ok := err.(unwrapper); ok && u.Unwrap() != nil {
		return u.Unwrap()
	}
	return err
}

// describe is a failure message for an answer: status and body (an S3 error
// document names its code; it does not repeat the signature).
func (r response) String() string {
	b := r.body
	if len(b) > 512 {
		b = b[:512]
	}
	return strconv.Itoa(r.status) + " " + string(b)
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// randomPrefix isolates one run's keys from every other run in the bucket.
func randomPrefix(t *testing.T) string {
	return "conformance/" + hex.EncodeToString(randomBytes(t, 8)) + "/"
}

func ptr(s string) *string { return &s }

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
