package s3store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/internal/realservers"
	"github.com/caddyupload/caddyupload/storage"
)

// onBothServers runs f against versitygw and SeaweedFS.
func onBothServers(t *testing.T, f func(t *testing.T, srv *realservers.S3Server)) {
	if testing.Short() {
		t.Run("fake", func(t *testing.T) { t.Parallel(); f(t, realservers.SharedFake(t)) })
		return
	}
	t.Run("versitygw", func(t *testing.T) { t.Parallel(); f(t, realservers.SharedVersityGW(t)) })
	t.Run("seaweedfs", func(t *testing.T) { t.Parallel(); f(t, realservers.SharedSeaweedFS(t)) })
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// put sends a presigned single PUT the way a browser would.
func put(t *testing.T, sr storage.SignedRequest, body []byte, host string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), sr.Method, sr.URL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range sr.Headers {
		if k != "Content-Length" {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", sr.Method, errors.Unwrap(err))
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// localhostOrigin reaches srv under another name than its endpoint, as a
// browser reaching an embedded server through the API's site would.
func localhostOrigin(t *testing.T, srv *realservers.S3Server) storage.Origin {
	u, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	return storage.Origin{Scheme: "http", Host: "localhost:" + u.Port()}
}

// TestOriginOverride: the signature covers the host the browser uses; the
// same URL sent with another Host is refused.
func TestOriginOverride(t *testing.T) {
	onBothServers(t, func(t *testing.T, srv *realservers.S3Server) {
		s := storeOn(t, srv, nil)
		origin := localhostOrigin(t, srv)
		sr, err := s.PresignPut(ctx(t), storage.PutInput{Key: "o/k.txt", Size: 5, ContentType: "text/plain"}, origin)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(sr.URL, "http://"+origin.Host+"/"+s.Bucket()+"/o/k.txt?") {
			t.Fatalf("URL does not address the bucket path-style under the origin")
		}
		if resp := put(t, sr, []byte("hello"), strings.TrimPrefix(srv.Endpoint, "http://")); resp.StatusCode != 403 {
			t.Fatalf("PUT with another Host: %d; want 403", resp.StatusCode)
		}
		if resp := put(t, sr, []byte("hello"), ""); resp.StatusCode != 200 {
			t.Fatalf("PUT through the origin: %d", resp.StatusCode)
		}
		if info, err := s.Head(ctx(t), "o/k.txt"); err != nil || info.Size != 5 {
			t.Fatalf("Head = %+v, %v", info, err)
		}
		post, err := s.PresignPost(ctx(t), storage.PostInput{Key: "o/p.txt", MaxSize: 10, ContentType: "text/plain"}, origin)
		if err != nil || post.URL != "http://"+origin.Host+"/"+s.Bucket() {
			t.Fatalf("POST URL under the origin: %v", err)
		}
	})
}

// TestPublicEndpoint: browsers get URLs on the public endpoint while the
// module talks to the private one.
func TestPublicEndpoint(t *testing.T) {
	onBothServers(t, func(t *testing.T, srv *realservers.S3Server) {
		origin := localhostOrigin(t, srv)
		s := storeOn(t, srv, func(c *Config) { c.PublicEndpoint = "http://" + origin.Host })
		sr, err := s.PresignPut(ctx(t), storage.PutInput{Key: "pub.txt", Size: 3, ContentType: "text/plain"}, storage.Origin{})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(sr.URL, "http://"+origin.Host+"/") {
			t.Fatal("presigned URL is not on the public endpoint")
		}
		if resp := put(t, sr, []byte("abc"), ""); resp.StatusCode != 200 {
			t.Fatalf("PUT: %d", resp.StatusCode)
		}
		if _, err := s.Head(ctx(t), "pub.txt"); err != nil {
			t.Fatalf("Head through the private endpoint: %v", err)
		}
	})
}

// TestCompleteQuotedETagsAnyOrder: ETags as clients send them back (Uppy v5
// quotes them) and parts out of order are accepted.
func TestCompleteQuotedETagsAnyOrder(t *testing.T) {
	onBothServers(t, func(t *testing.T, srv *realservers.S3Server) {
		s := storeOn(t, srv, nil)
		id, err := s.CreateMultipart(ctx(t), "mp.bin", "application/octet-stream")
		if err != nil {
			t.Fatal(err)
		}
		var parts []storage.Part
		for i, n := range []int{5 << 20, 10} {
			sr, err := s.PresignPart(ctx(t), storage.PartInput{Key: "mp.bin", UploadID: id, Number: int32(i + 1), Size: int64(n)}, storage.Origin{})
			if err != nil {
				t.Fatal(err)
			}
			resp := put(t, sr, make([]byte, n), "")
			if resp.StatusCode != 200 {
				t.Fatalf("part %d: %d", i+1, resp.StatusCode)
			}
			parts = append(parts, storage.Part{Number: int32(i + 1), ETag: resp.Header.Get("ETag")})
		}
		if !strings.HasPrefix(parts[0].ETag, `"`) {
			t.Fatalf("server sent an unquoted ETag %q; the test needs quoted ones", parts[0].ETag)
		}
		slices.Reverse(parts)
		if err := s.CompleteMultipart(ctx(t), "mp.bin", id, parts); err != nil {
			t.Fatalf("CompleteMultipart: %v", err)
		}
		if info, err := s.Head(ctx(t), "mp.bin"); err != nil || info.Size != 5<<20+10 {
			t.Fatalf("Head = %+v, %v", info, err)
		}
	})
}

// TestBucketAndCORS: EnsureBucket creates once and accepts an existing
// bucket; PutCORS rules are read back and answer browser preflights.
func TestBucketAndCORS(t *testing.T) {
	onBothServers(t, func(t *testing.T, srv *realservers.S3Server) {
		s := storeOn(t, srv, func(c *Config) { c.Bucket += "-new" })
		if _, err := s.Head(ctx(t), "x"); err == nil || errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Head in a missing bucket: %v; want ErrUnavailable", err)
		}
		for range 2 {
			if err := s.EnsureBucket(ctx(t)); err != nil {
				t.Fatalf("EnsureBucket: %v", err)
			}
		}
		if rules, err := s.CORS(ctx(t)); err != nil || len(rules) != 0 {
			t.Fatalf("CORS of a new bucket = %+v, %v; want none", rules, err)
		}
		const app = "http://app.example"
		if err := s.PutCORS(ctx(t), []string{app}); err != nil {
			t.Fatalf("PutCORS: %v", err)
		}
		rules, err := s.CORS(ctx(t))
		if err != nil || len(rules) != 1 {
			t.Fatalf("CORS = %+v, %v", rules, err)
		}
		want := UploadCORS([]string{app})
		r := rules[0]
		slices.Sort(r.AllowedMethods)
		slices.Sort(want.AllowedMethods)
		if !slices.Equal(r.AllowedOrigins, want.AllowedOrigins) || !slices.Equal(r.AllowedMethods, want.AllowedMethods) ||
			!slices.Equal(r.ExposeHeaders, want.ExposeHeaders) || r.MaxAgeSeconds != 3000 {
			t.Fatalf("CORS rule read back %+v; want %+v", r, want)
		}

		preflight := func(origin string) http.Header {
			req, _ := http.NewRequestWithContext(ctx(t), http.MethodOptions, srv.Endpoint+"/"+s.Bucket()+"/some/key", nil)
			req.Header.Set("Origin", origin)
			req.Header.Set("Access-Control-Request-Method", "PUT")
			req.Header.Set("Access-Control-Request-Headers", "content-type,x-amz-checksum-sha256")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.Header
		}
		if h := preflight(app); h.Get("Access-Control-Allow-Origin") != app && h.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("preflight from the allowed origin: headers %v", h)
		}
		if got := preflight("http://evil.example").Get("Access-Control-Allow-Origin"); got != "" {
			t.Fatalf("preflight from another origin allowed %q", got)
		}

		// The ETag of a PUT is readable by the page (multipart needs it).
		sr, err := s.PresignPut(ctx(t), storage.PutInput{Key: "cors.txt", Size: 2, ContentType: "text/plain"}, storage.Origin{})
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequestWithContext(ctx(t), sr.Method, sr.URL, strings.NewReader("ok"))
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("Origin", app)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(errors.Unwrap(err))
		}
		resp.Body.Close()
		expose := strings.ToLower(resp.Header.Get("Access-Control-Expose-Headers"))
		if resp.StatusCode != 200 || !(strings.Contains(expose, "etag") || expose == "*") {
			t.Fatalf("PUT with Origin: %d, expose %q; want ETag exposed", resp.StatusCode, expose)
		}
	})
}

// TestErrorsCarryNoSecrets: a failure to reach the server is ErrUnavailable
// and its text holds neither the secret nor a signature.
func TestErrorsCarryNoSecrets(t *testing.T) {
	const secret = "S3CR3T-do-not-print"
	s, err := New(context.Background(), Config{
		Endpoint: "http://" + realservers.Addr(realservers.FreePort(t)), Bucket: "bucket",
		AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: secret, UsePathStyle: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, herr := s.Head(c, "k")
	_, lerr := s.ListParts(c, "k", "u")
	derr := s.Delete(c, "a", "b")
	for _, err := range []error{herr, lerr, derr} {
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("error %v; want ErrUnavailable", err)
		}
		if msg := err.Error(); strings.Contains(msg, secret) || strings.Contains(msg, "Signature") {
			t.Fatalf("error text carries a credential: %s", msg)
		}
	}
}

// TestHeadReportsSHA256: both servers keep the signed full-object checksum,
// so completion can compare it without reading the object.
func TestHeadReportsSHA256(t *testing.T) {
	onBothServers(t, func(t *testing.T, srv *realservers.S3Server) {
		s := storeOn(t, srv, nil)
		body := []byte("checksummed body")
		sum := sha256.Sum256(body)
		sr, err := s.PresignPut(ctx(t), storage.PutInput{Key: "sum", Size: int64(len(body)), ContentType: "text/plain", SHA256: sum[:]}, storage.Origin{})
		if err != nil {
			t.Fatal(err)
		}
		if resp := put(t, sr, body, ""); resp.StatusCode != 200 {
			t.Fatalf("PUT: %d", resp.StatusCode)
		}
		info, err := s.Head(ctx(t), "sum")
		if err != nil || !bytes.Equal(info.SHA256, sum[:]) {
			t.Fatalf("Head = %+v, %v; want SHA256 %x", info, err, sum)
		}
	})
}
