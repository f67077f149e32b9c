package caddyupload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

func TestMain(m *testing.M) {
	code := m.Run()
	realservers.StopShared()
	os.Exit(code)
}

// testUsers are the basic_auth accounts of the test sites.
var testUsers = map[string]string{"alice": "alice-pw", "bob": "bob-pw"}

// testSite is Caddy running in this test process with an upload route on a
// real S3-compatible server.
type testSite struct {
	t      *testing.T
	s3     *realservers.S3Server
	bucket string
	base   string // http://127.0.0.1:PORT
	dir    string
	port   int
}

// newSite prepares a site on server srv (a fresh bucket, a data dir, a
// port) without starting Caddy.
func newSite(t *testing.T, srv *realservers.S3Server) *testSite {
	t.Helper()
	s := &testSite{t: t, s3: srv, bucket: srv.NewBucket(t), dir: t.TempDir(), port: realservers.FreePort(t)}
	s.base = fmt.Sprintf("http://127.0.0.1:%d", s.port)
	t.Setenv("CU_TEST_S3_KEY", srv.AccessKey)
	t.Setenv("CU_TEST_S3_SECRET", srv.SecretKey)
	return s
}

// caddyfile renders a site whose /up/* route is `upload { s3 {...} ledger
// ... <policy> }` behind basic_auth.
func (s *testSite) caddyfile(policy string) string { return s.caddyfileWith(policy, "") }

// caddyfileWith adds directives after the upload block, in the same route
// (e.g. the reverse_proxy a forwarding route hands completions to).
func (s *testSite) caddyfileWith(policy, after string) string {
	users := s.basicAuthUsers()
	return fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	log {
		level ERROR
	}
	storage file_system %[1]s/caddy
	http_port %[2]d
}
http://127.0.0.1:%[2]d {
	handle_path /up/* {
		basic_auth {
%[3]s		}
		upload {
			s3 {
				bucket %[4]s
				endpoint %[5]s
				access_key_id {env.CU_TEST_S3_KEY}
				secret_access_key {env.CU_TEST_S3_SECRET}
			}
			ledger %[1]s/ledger.db
%[6]s
		}
		%[7]s
	}
}
`, s.dir, s.port, users, s.bucket, s.s3.Endpoint, policy, after)
}

// load adapts and loads cfg into this process's Caddy; the first load also
// stops Caddy when the test ends.
func (s *testSite) load(cfg string) {
	s.t.Helper()
	if err := loadCaddyfile(cfg); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = caddy.Stop() })
	s.waitServing()
}

// waitServing waits until the current config answers.
func (s *testSite) waitServing() {
	s.t.Helper()
	// Right after a reload the old server may still take a connection and
	// close it; wait until the new one answers, as a browser's retry would.
	ok := 0
	eventually(s.t, "the new config serving", func() bool {
		req, _ := http.NewRequest(http.MethodGet, s.base+"/up/client.js", nil)
		resp, err := noRedirect.Do(req)
		if err != nil {
			ok = 0
			return false
		}
		resp.Body.Close()
		ok++
		return ok >= 3
	})
}

func loadCaddyfile(cfg string) error {
	adapter := caddyconfig.GetAdapter("caddyfile")
	js, _, err := adapter.Adapt([]byte(cfg), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return fmt.Errorf("adapt: %w", err)
	}
	return caddy.Load(js, true)
}

// call sends an API request as user ("" = anonymous) and decodes the JSON
// answer into out when out is non-nil.
func (s *testSite) call(user, method, path string, body any, out any) *http.Response {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, s.base+"/up"+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if user != "" {
		req.SetBasicAuth(user, testUsers[user])
	}
	resp := do(s.t, noRedirect, req)
	if out != nil {
		if err := json.Unmarshal(resp.body, out); err != nil {
			s.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, resp.body, err)
		}
	}
	return resp.Response
}

// noRedirect makes a new connection per request: a reload closes the old
// server's connections at a moment the client cannot see.
var noRedirect = &http.Client{
	Timeout:       30 * time.Second,
	Transport:     &http.Transport{DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

type response struct {
	*http.Response
	body []byte
}

func do(t *testing.T, c *http.Client, req *http.Request) response {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return response{resp, body}
}

// created is the create answer.
type created struct {
	ID        string            `json:"id"`
	Key       string            `json:"key"`
	Status    string            `json:"status"`
	Method    string            `json:"method"`
	URL       string            `json:"url"`
	Headers   map[string]string `json:"headers"`
	Fields    map[string]string `json:"fields"`
	ExpiresAt time.Time         `json:"expires_at"`
	Multipart *struct {
		PartSize  int64 `json:"part_size"`
		PartCount int32 `json:"part_count"`
	} `json:"multipart"`
}

type record struct {
	ID          string     `json:"id"`
	Key         string     `json:"key"`
	Status      string     `json:"status"`
	Filename    string     `json:"filename"`
	Size        int64      `json:"size"`
	Type        string     `json:"type"`
	CreatedAt   time.Time  `json:"created_at"`
	ConfirmedAt *time.Time `json:"confirmed_at"`
}

type apiErr struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Message string `json:"message"`
}

// create makes an upload and fails the test unless it answers 201.
func (s *testSite) create(user, filename string, size int64, typ string) created {
	s.t.Helper()
	var c created
	resp := s.call(user, "POST", "/", map[string]any{"filename": filename, "size": size, "type": typ}, &c)
	if resp.StatusCode != http.StatusCreated {
		s.t.Fatalf("create %s: %d", filename, resp.StatusCode)
	}
	return c
}

// put sends body to a presigned PUT with the headers it came with,
// overriding any in override; it returns the storage server's status, or
// 0 when the server closed the connection before the body was sent (how
// some servers refuse a request whose length contradicts its signature).
func (s *testSite) put(c created, body []byte, override map[string]string) int {
	s.t.Helper()
	headers := make(map[string]string, len(c.Headers))
	for k, v := range c.Headers {
		headers[k] = v
	}
	for k, v := range override {
		for hk := range headers {
			if strings.EqualFold(hk, k) {
				delete(headers, hk)
			}
		}
		if v != "" {
			headers[k] = v
		}
	}
	st, err := tryPut(c.URL, headers, body)
	if err != nil && !refusal(0, err) {
		s.t.Fatalf("PUT could not reach storage: %v", err)
	}
	return st
}

// refused reports whether a storage answer from put is a refusal: 403, or
// 0 for a connection the server closed on a body it would not take.
func refused(status int) bool { return status == http.StatusForbidden || status == 0 }

// refusal reports whether a PUT's outcome is the storage server refusing
// it: a 403, or the server closing the connection on the body. A failure to
// connect is never a refusal, so a server that is down cannot pass for one
// that said no.
func refusal(status int, err error) bool {
	if err == nil {
		return status == http.StatusForbidden
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// expectError asserts status and error code of resp's JSON body.
func expectError(t *testing.T, resp *http.Response, status int, code string) {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Errorf("status %d, want %d (%s)", resp.StatusCode, status, body)
		return
	}
	var e apiErr
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != code || e.Error.Message == "" || e.Message != e.Error.Message {
		t.Errorf("body %s: want error code %q with a message", body, code)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
}

// objectExists asks the storage server directly.
func (s *testSite) objectExists(key string) bool {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.s3.Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	return err == nil
}

// putDirect writes an object with the server's root credentials, bypassing
// the module: a canary, or an object that lies about its upload.
func (s *testSite) putDirect(key string, body []byte, typ string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.s3.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: &s.bucket, Key: &key, Body: bytes.NewReader(body), ContentType: &typ}); err != nil {
		s.t.Fatal(err)
	}
}

// eventually polls cond until it holds or 30 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ledgerPath(s *testSite) string { return filepath.Join(s.dir, "ledger.db") }

// uppyCreate starts a multipart upload through the Companion route, as
// Uppy does (with no size), and returns its key and uploadId.
func (s *testSite) uppyCreate() (key, uploadID string) {
	s.t.Helper()
	var m struct {
		Key      string `json:"key"`
		UploadID string `json:"uploadId"`
	}
	if resp := s.call("alice", "POST", "/s3/multipart", map[string]any{"filename": "v.bin", "type": "application/octet-stream", "metadata": map[string]string{"name": "v.bin"}}, &m); resp.StatusCode != 200 || m.UploadID == "" || m.Key == "" {
		s.t.Fatalf("create: %d %+v", resp.StatusCode, m)
	}
	return m.Key, m.UploadID
}

// uppyParts signs and uploads parts of the given sizes of a Companion
// multipart upload, as Uppy does (it picks its own part sizes).
func (s *testSite) uppyParts(key, id string, sizes ...int) []companionPart {
	s.t.Helper()
	var parts []companionPart
	for i, n := range sizes {
		var signed struct {
			URL string `json:"url"`
		}
		path := fmt.Sprintf("/s3/multipart/%s/%d?key=%s", id, i+1, url.QueryEscape(key))
		if resp := s.call("alice", "GET", path, nil, &signed); resp.StatusCode != 200 {
			s.t.Fatalf("sign part %d: %d", i+1, resp.StatusCode)
		}
		req, _ := http.NewRequest(http.MethodPut, signed.URL, strings.NewReader(strings.Repeat("p", n)))
		r := do(s.t, http.DefaultClient, req)
		if r.StatusCode != 200 {
			s.t.Fatalf("part %d: %d %s", i+1, r.StatusCode, r.body)
		}
		parts = append(parts, companionPart{PartNumber: int32(i + 1), ETag: r.Header.Get("ETag")})
	}
	return parts
}

// basicAuthUsers is the body of a basic_auth block with testUsers.
func (s *testSite) basicAuthUsers() string {
	var users strings.Builder
	for u, pw := range testUsers {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			s.t.Fatal(err)
		}
		fmt.Fprintf(&users, "\t\t\t%s %s\n", u, h)
	}
	return users.String()
}
