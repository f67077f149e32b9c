package caddyupload

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

// eachServer runs f against both S3-compatible implementations and the
// in-process fake (a few seconds more, and the fast tier cannot drift from
// them unseen); in the fast tier (-short) against the fake only.
func eachServer(t *testing.T, f func(t *testing.T, srv *realservers.S3Server)) {
	if !testing.Short() {
		t.Run("versitygw", func(t *testing.T) { f(t, realservers.SharedVersityGW(t)) })
		t.Run("seaweedfs", func(t *testing.T) { f(t, realservers.SharedSeaweedFS(t)) })
	}
	t.Run("fake", func(t *testing.T) { f(t, realservers.SharedFake(t)) })
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func TestSingleUploadLifecycle(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		s := newSite(t, srv)
		s.load(s.caddyfile("max_size 1MiB\n types image/png text/plain\n key files/{user}/{uuid}{ext}"))

		body := pngOfSize(t, 1000)
		c := s.create("alice", "photo.PNG", int64(len(body)), "image/png")
		if c.Status != "pending" || c.Method != "PUT" || len(c.ID) != idLen || c.URL == "" {
			t.Fatalf("create answer: %+v", c)
		}
		if !strings.HasPrefix(c.Key, "files/alice/") || !strings.HasSuffix(c.Key, ".png") {
			t.Errorf("key %q", c.Key)
		}
		u, _ := url.Parse(c.URL)
		if signed := u.Query().Get("X-Amz-SignedHeaders"); !strings.Contains(signed, "content-length") || !strings.Contains(signed, "content-type") {
			t.Errorf("signed headers %q must include content-length and content-type", signed)
		}
		if c.Headers["Content-Type"] != "image/png" || c.Headers["Content-Length"] != "1000" {
			t.Errorf("headers %v", c.Headers)
		}
		if d := time.Until(c.ExpiresAt); d <= 0 || d > 61*time.Second {
			t.Errorf("URL expiry %s, want the 60s default", d)
		}

		// Complete before the bytes arrive: 409.
		expectError(t, s.call("alice", "POST", "/"+c.ID+"/complete", nil, nil), 409, "not_uploaded")

		// The storage server itself refuses lies about size and type.
		if st := s.put(c, body[:999], nil); !refused(st) {
			t.Errorf("PUT of N-1 bytes: %d, want 403", st)
		}
		if st := s.put(c, append(body, 'x'), nil); !refused(st) {
			t.Errorf("PUT of N+1 bytes: %d, want 403", st)
		}
		if st := s.put(c, body, map[string]string{"Content-Type": "text/html"}); !refused(st) {
			t.Errorf("PUT with another type: %d, want 403", st)
		}
		if s.objectExists(c.Key) {
			t.Fatal("a refused PUT left an object")
		}
		if st := s.put(c, body, nil); st != http.StatusOK {
			t.Fatalf("PUT: %d", st)
		}

		var rec record
		if resp := s.call("alice", "GET", "/"+c.ID, nil, &rec); resp.StatusCode != 200 || rec.Status != "pending" || rec.Filename != "photo.PNG" {
			t.Errorf("GET record: %d %+v", resp.StatusCode, rec)
		}
		if resp := s.call("alice", "POST", "/"+c.ID+"/complete", nil, &rec); resp.StatusCode != 200 || rec.Status != "confirmed" || rec.Size != 1000 || rec.ConfirmedAt == nil {
			t.Fatalf("complete: %d %+v", resp.StatusCode, rec)
		}
		var again record
		if resp := s.call("alice", "POST", "/"+c.ID+"/complete", nil, &again); resp.StatusCode != 200 || !again.ConfirmedAt.Equal(*rec.ConfirmedAt) {
			t.Errorf("complete is not idempotent: %d %+v", resp.StatusCode, again)
		}

		// Download: a redirect to a short-lived GET naming the file.
		resp := s.call("alice", "GET", "/"+c.ID+"/download", nil, nil)
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("download: %d", resp.StatusCode)
		}
		got := do(t, http.DefaultClient, mustRequest(t, "GET", resp.Header.Get("Location")))
		if got.StatusCode != 200 || !bytes.Equal(got.body, body) {
			t.Errorf("download GET: %d, %d bytes", got.StatusCode, len(got.body))
		}
		if cd := got.Header.Get("Content-Disposition"); !strings.Contains(cd, "attachment") || !strings.Contains(cd, "photo.PNG") {
			t.Errorf("Content-Disposition %q", cd)
		}

		// Another subject sees nothing of it.
		for _, op := range []struct{ method, path string }{
			{"GET", ""}, {"POST", "/complete"}, {"DELETE", ""}, {"GET", "/download"}, {"GET", "/parts"},
		} {
			expectError(t, s.call("bob", op.method, "/"+c.ID+op.path, nil, nil), 404, "not_found")
		}

		// Abort deletes the object; the record stays, aborted.
		if resp := s.call("alice", "DELETE", "/"+c.ID, nil, nil); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("DELETE: %d", resp.StatusCode)
		}
		if s.objectExists(c.Key) {
			t.Error("object survived DELETE")
		}
		s.call("alice", "GET", "/"+c.ID, nil, &rec)
		if rec.Status != "aborted" {
			t.Errorf("after DELETE: %s", rec.Status)
		}
	})
}

func mustRequest(t *testing.T, method, u string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestVerificationRejectsAndDeletes(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		s := newSite(t, srv)
		s.load(s.caddyfile("max_size 1MiB"))
		// An object that differs from its record (written around the module)
		// is deleted and the record rejected.
		c := s.create("alice", "a.txt", 10, "text/plain")
		s.putDirect(c.Key, []byte("0123456789ABC"), "text/plain")
		expectError(t, s.call("alice", "POST", "/"+c.ID+"/complete", nil, nil), 422, "verification_failed")
		if s.objectExists(c.Key) {
			t.Error("rejected object not deleted")
		}
		var rec record
		s.call("alice", "GET", "/"+c.ID, nil, &rec)
		if rec.Status != "rejected" {
			t.Errorf("status %s, want rejected", rec.Status)
		}
		expectError(t, s.call("alice", "POST", "/"+c.ID+"/complete", nil, nil), 422, "verification_failed")

		c = s.create("alice", "b.txt", 5, "text/plain")
		s.putDirect(c.Key, []byte("12345"), "text/html")
		expectError(t, s.call("alice", "POST", "/"+c.ID+"/complete", nil, nil), 422, "verification_failed")

		// Same size and type, other content than the declared SHA-256.
		var c2 created
		s.call("alice", "POST", "/", `{"filename":"c.txt","size":3,"type":"text/plain","sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}`, &c2)
		other := sha256.Sum256([]byte("abd"))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := srv.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: &s.bucket, Key: &c2.Key, Body: strings.NewReader("abd"),
			ContentType: aws.String("text/plain"), ChecksumSHA256: aws.String(base64.StdEncoding.EncodeToString(other[:]))}); err != nil {
			t.Fatal(err)
		}
		expectError(t, s.call("alice", "POST", "/"+c2.ID+"/complete", nil, nil), 422, "verification_failed")
	})
}

func TestExpiredURLRefused(t *testing.T) {
	s := newSite(t, oneServer(t))
	s.load(s.caddyfile("url_ttl 1s"))
	c := s.create("alice", "a.txt", 3, "text/plain")
	// Positive control: the same kind of URL, used in time, works.
	if st := s.put(s.create("alice", "b.txt", 3, "text/plain"), []byte("abc"), nil); st != http.StatusOK {
		t.Fatalf("PUT within the URL's lifetime: %d, want 200", st)
	}
	time.Sleep(2500 * time.Millisecond)
	if st := s.put(c, []byte("abc"), nil); st != http.StatusForbidden {
		t.Errorf("PUT after expiry: %d, want 403", st)
	}
}

func TestBadInput(t *testing.T) {
	s := newSite(t, oneServer(t))
	s.load(s.caddyfile("max_size 1KiB\n types image/png text/plain"))
	for _, tc := range []struct {
		name   string
		body   string
		status int
		code   string
	}{
		{"malformed", `{"filename":`, 400, "invalid_request"},
		{"empty", ``, 400, "invalid_request"},
		{"not an object", `[1,2]`, 400, "invalid_request"},
		{"trailing data", `{"filename":"a.txt","size":1,"type":"text/plain"} {}`, 400, "invalid_request"},
		{"missing size", `{"filename":"a.txt","type":"text/plain"}`, 400, "invalid_request"},
		{"missing filename", `{"size":1,"type":"text/plain"}`, 400, "invalid_request"},
		{"missing type", `{"filename":"a.txt","size":1}`, 400, "invalid_request"},
		{"size zero", `{"filename":"a.txt","size":0,"type":"text/plain"}`, 400, "invalid_request"},
		{"size negative", `{"filename":"a.txt","size":-5,"type":"text/plain"}`, 400, "invalid_request"},
		{"size fraction", `{"filename":"a.txt","size":1.5,"type":"text/plain"}`, 400, "invalid_request"},
		{"size string", `{"filename":"a.txt","size":"5","type":"text/plain"}`, 400, "invalid_request"},
		{"size exponent", `{"filename":"a.txt","size":1e3,"type":"text/plain"}`, 400, "invalid_request"},
		{"size huge", `{"filename":"a.txt","size":99999999999999999999999,"type":"text/plain"}`, 400, "invalid_request"},
		{"filename number", `{"filename":5,"size":1,"type":"text/plain"}`, 400, "invalid_request"},
		{"filename long", `{"filename":"` + strings.Repeat("a", 252) + `.txt","size":1,"type":"text/plain"}`, 400, "invalid_request"},
		{"filename control", `{"filename":"a\u0007.txt","size":1,"type":"text/plain"}`, 400, "invalid_request"},
		{"filename newline", `{"filename":"a\n.txt","size":1,"type":"text/plain"}`, 400, "invalid_request"},
		{"bad mime", `{"filename":"a.txt","size":1,"type":"text"}`, 400, "invalid_request"},
		{"bad sha256", `{"filename":"a.txt","size":1,"type":"text/plain","sha256":"xyz"}`, 400, "invalid_request"},
		{"metadata not strings", `{"filename":"a.txt","size":1,"type":"text/plain","metadata":{"a":1}}`, 400, "invalid_request"},
		{"too large", `{"filename":"a.txt","size":1025,"type":"text/plain"}`, 413, "too_large"},
		{"type not allowed", `{"filename":"a.pdf","size":1,"type":"application/pdf"}`, 415, "unsupported_type"},
		{"extension contradicts", `{"filename":"a.html","size":1,"type":"text/plain"}`, 415, "unsupported_type"},
		{"body over 64KiB", `{"filename":"a.txt","size":1,"type":"text/plain","metadata":{"x":"` + strings.Repeat("a", 70000) + `"}}`, 413, "too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectError(t, s.call("alice", "POST", "/", tc.body, nil), tc.status, tc.code)
		})
	}

	t.Run("no credentials", func(t *testing.T) {
		// basic_auth answers before upload runs.
		if resp := s.call("", "POST", "/", `{"filename":"a.txt","size":1,"type":"text/plain"}`, nil); resp.StatusCode != 401 {
			t.Errorf("status %d, want 401", resp.StatusCode)
		}
	})
	t.Run("unknown and malformed ids", func(t *testing.T) {
		expectError(t, s.call("alice", "GET", "/"+newID(), nil, nil), 404, "not_found")
		expectError(t, s.call("alice", "GET", "/a/b/c", nil, nil), 404, "not_found")
		expectError(t, s.call("alice", "GET", "/NOT-AN-ID", nil, nil), 404, "not_found")
		expectError(t, s.call("alice", "POST", "/"+newID()+"/complete", nil, nil), 404, "not_found")
	})
	t.Run("methods", func(t *testing.T) {
		expectError(t, s.call("alice", "GET", "/", nil, nil), 405, "method_not_allowed")
		expectError(t, s.call("alice", "PUT", "/"+newID(), nil, nil), 405, "method_not_allowed")
		expectError(t, s.call("alice", "GET", "/"+newID()+"/complete", nil, nil), 405, "method_not_allowed")
	})
	t.Run("sha256 accepted", func(t *testing.T) {
		var c created
		resp := s.call("alice", "POST", "/", `{"filename":"a.txt","size":3,"type":"text/plain","sha256":"BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"}`, &c)
		if resp.StatusCode != 201 {
			t.Fatalf("%d", resp.StatusCode)
		}
		if st := s.put(c, []byte("abc"), nil); st != 200 {
			t.Errorf("PUT with the declared checksum: %d", st)
		}
	})
}

func TestMultipartUpload(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		s := newSite(t, srv)
		s.load(s.caddyfile("max_size 64MiB\n multipart_threshold 6MiB\n part_size 5MiB"))
		body := randomBytes(11<<20 + 123)
		c := s.create("alice", "big.bin", int64(len(body)), "application/octet-stream")
		if c.Multipart == nil || c.Multipart.PartSize != 5<<20 || c.Multipart.PartCount != 3 || c.URL != "" {
			t.Fatalf("create: %+v", c)
		}
		var signed struct {
			Parts []struct {
				Number  int32             `json:"number"`
				URL     string            `json:"url"`
				Headers map[string]string `json:"headers"`
			} `json:"parts"`
			ExpiresAt time.Time `json:"expires_at"`
		}
		if resp := s.call("alice", "POST", "/"+c.ID+"/parts", map[string]any{"numbers": []int{1, 2, 3}}, &signed); resp.StatusCode != 200 || len(signed.Parts) != 3 {
			t.Fatalf("sign parts: %d %+v", resp.StatusCode, signed)
		}
		expectError(t, s.call("alice", "POST", "/"+c.ID+"/parts", map[string]any{"numbers": []int{4}}, nil), 400, "invalid_request")
		expectError(t, s.call("alice", "POST", "/"+c.ID+"/parts", map[string]any{"numbers": []int{0}}, nil), 400, "invalid_request")
		expectError(t, s.call("bob", "POST", "/"+c.ID+"/parts", map[string]any{"numbers": []int{1}}, nil), 404, "not_found")

		// A part of the wrong length is refused by the storage server.
		p := signed.Parts[0]
		if st, err := tryPut(p.URL, p.Headers, body[:5<<20-1]); !refusal(st, err) {
			t.Errorf("short part: %d %v, want 403 (or the connection closed early)", st, err)
		}
		expectError(t, s.call("alice", "POST", "/"+c.ID+"/complete", nil, nil), 409, "not_uploaded")
		for i, p := range signed.Parts[:2] {
			chunk := body[int64(i)*c.Multipart.PartSize : min(int64(len(body)), int64(i+1)*c.Multipart.PartSize)]
			if st := putPart(t, p.URL, p.Headers, chunk); st != 200 {
				t.Fatalf("part %d: %d", p.Number, st)
			}
		}
		var listed struct {
			Parts []struct {
				Number int32  `json:"number"`
				ETag   string `json:"etag"`
				Size   int64  `json:"size"`
			} `json:"parts"`
		}
		if resp := s.call("alice", "GET", "/"+c.ID+"/parts", nil, &listed); resp.StatusCode != 200 || len(listed.Parts) != 2 || listed.Parts[1].Size != 5<<20 {
			t.Fatalf("list parts: %+v", listed)
		}
		var view struct {
			Status    string `json:"status"`
			Multipart *struct {
				PartSize  int64 `json:"part_size"`
				PartCount int32 `json:"part_count"`
			} `json:"multipart"`
		}
		if s.call("alice", "GET", "/"+c.ID, nil, &view); view.Multipart == nil || view.Multipart.PartCount != 3 || view.Multipart.PartSize != 5<<20 {
			t.Errorf("pending multipart record does not show its layout: %+v", view)
		}
		expectError(t, s.call("alice", "POST", "/"+c.ID+"/complete", nil, nil), 409, "not_uploaded")
		p = signed.Parts[2]
		if st := putPart(t, p.URL, p.Headers, body[2*c.Multipart.PartSize:]); st != 200 {
			t.Fatalf("last part: %d", st)
		}
		var rec record
		if resp := s.call("alice", "POST", "/"+c.ID+"/complete", nil, &rec); resp.StatusCode != 200 || rec.Status != "confirmed" || rec.Size != int64(len(body)) {
			t.Fatalf("complete: %d %+v", resp.StatusCode, rec)
		}
		if resp := s.call("alice", "POST", "/"+c.ID+"/complete", nil, &rec); resp.StatusCode != 200 || rec.Status != "confirmed" {
			t.Errorf("second complete: %d", resp.StatusCode)
		}
		resp := s.call("alice", "GET", "/"+c.ID+"/download", nil, nil)
		got := do(t, http.DefaultClient, mustRequest(t, "GET", resp.Header.Get("Location")))
		if !bytes.Equal(got.body, body) {
			t.Errorf("downloaded %d bytes, differ from the upload", len(got.body))
		}
	})
}

// tryPut is a PUT whose refusal may come as a status or, when the server
// answers before reading the body and closes, as a connection error.
func tryPut(u string, headers map[string]string, chunk []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPut, u, bytes.NewReader(chunk))
	if err != nil {
		return 0, err
	}
	for k, v := range headers {
		if !strings.EqualFold(k, "Content-Length") {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func putPart(t *testing.T, u string, headers map[string]string, chunk []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, u, bytes.NewReader(chunk))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		if !strings.EqualFold(k, "Content-Length") {
			req.Header.Set(k, v)
		}
	}
	return do(t, http.DefaultClient, req).StatusCode
}

func TestPostPolicyUpload(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		s := newSite(t, srv)
		s.load(s.caddyfile("method post\n max_size 1MiB"))
		c := s.create("alice", "note.txt", 5, "text/plain")
		if c.Method != "POST" || c.Fields["key"] != c.Key || c.Fields["Content-Type"] != "text/plain" {
			t.Fatalf("create: %+v", c)
		}
		if st := postForm(t, c, []byte("12345678")); st < 400 {
			t.Errorf("POST of more bytes than declared: %d", st)
		}
		if st := postForm(t, c, []byte("12345")); st != 204 && st != 200 && st != 201 {
			t.Fatalf("POST: %d", st)
		}
		var rec record
		if resp := s.call("alice", "POST", "/"+c.ID+"/complete", nil, &rec); resp.StatusCode != 200 || rec.Status != "confirmed" {
			t.Fatalf("complete: %d %+v", resp.StatusCode, rec)
		}
	})
}

func postForm(t *testing.T, c created, file []byte) int {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range c.Fields {
		_ = mw.WriteField(k, v)
	}
	fw, _ := mw.CreateFormFile("file", "upload")
	_, _ = fw.Write(file)
	_ = mw.Close()
	req, err := http.NewRequest(http.MethodPost, c.URL, &buf)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return do(t, http.DefaultClient, req).StatusCode
}

func TestSweeperExpiresOnlyItsOwnKeys(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		s := newSite(t, srv)
		s.load(s.caddyfile("url_ttl 5s\n pending_ttl 5s\n sweep_interval 1s"))
		canary := "canary/" + newID() + ".txt"
		s.putDirect(canary, []byte("keep me"), "text/plain")

		c := s.create("alice", "left.txt", 4, "text/plain")
		if st := s.put(c, []byte("gone"), nil); st != 200 {
			t.Fatalf("PUT: %d", st)
		}
		kept := s.create("alice", "kept.txt", 4, "text/plain")
		if st := s.put(kept, []byte("kept"), nil); st != 200 {
			t.Fatalf("PUT: %d", st)
		}
		var rec record
		if resp := s.call("alice", "POST", "/"+kept.ID+"/complete", nil, &rec); resp.StatusCode != 200 {
			t.Fatalf("complete: %d", resp.StatusCode)
		}
		eventually(t, "abandoned upload expired", func() bool {
			s.call("alice", "GET", "/"+c.ID, nil, &rec)
			return rec.Status == "expired"
		})
		// The record is claimed (expired) first, then its object deleted.
		eventually(t, "the expired object deleted", func() bool { return !s.objectExists(c.Key) })
		if !s.objectExists(canary) {
			t.Error("the sweeper deleted a key it did not issue")
		}
		if !s.objectExists(kept.Key) {
			t.Error("the sweeper deleted a confirmed upload")
		}
		expectError(t, s.call("alice", "POST", "/"+c.ID+"/complete", nil, nil), 410, "expired")
	})
}

// TestReloadKeepsLedger loads two different configs on one ledger file: the
// second must not wait for the first's file lock, and records survive.
func TestReloadKeepsLedger(t *testing.T) {
	s := newSite(t, oneServer(t))
	s.load(s.caddyfile("max_size 1MiB"))
	c := s.create("alice", "a.txt", 3, "text/plain")
	if st := s.put(c, []byte("abc"), nil); st != 200 {
		t.Fatalf("PUT: %d", st)
	}
	done := make(chan error, 1)
	go func() { done <- loadCaddyfile(s.caddyfile("max_size 2MiB")) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("reload hung: the ledger file lock deadlocked")
	}
	s.waitServing()
	var rec record
	if resp := s.call("alice", "POST", "/"+c.ID+"/complete", nil, &rec); resp.StatusCode != 200 || rec.Status != "confirmed" {
		t.Fatalf("complete after reload: %d %+v", resp.StatusCode, rec)
	}
	big := s.create("alice", "b.txt", 1<<20+1, "text/plain") // allowed by the new config only
	if big.ID == "" {
		t.Fatal("new policy not applied")
	}
	// A third, different config on the same file, then back.
	for i := 0; i < 3; i++ {
		if err := loadCaddyfile(s.caddyfile(fmt.Sprintf("max_size %dMiB", 3+i))); err != nil {
			t.Fatal(err)
		}
	}
	s.waitServing()
	if resp := s.call("alice", "GET", "/"+big.ID, nil, &rec); resp.StatusCode != 200 || rec.Status != "pending" {
		t.Errorf("record lost across reloads: %d", resp.StatusCode)
	}
}

// Metadata is bounded as a whole, so that records (and their events) stay
// small: 4 KiB of keys and values pass, one byte more does not.
func TestMetadataBounded(t *testing.T) {
	s := newSite(t, oneServer(t))
	s.load(s.caddyfile(""))
	md := map[string]string{}
	for i := range 4 {
		md[fmt.Sprintf("k%d", i)] = strings.Repeat("v", 1022)
	}
	body := map[string]any{"filename": "a.txt", "size": 5, "type": "text/plain", "metadata": md}
	if resp := s.call("alice", "POST", "/", body, nil); resp.StatusCode != 201 {
		t.Fatalf("4096 bytes of metadata: %d", resp.StatusCode)
	}
	md["k0"] += "v"
	expectError(t, s.call("alice", "POST", "/", body, nil), 400, "invalid_request")
}
