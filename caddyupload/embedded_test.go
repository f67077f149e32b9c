package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

// noRedirect lets tests see the 302 of a download.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

type created struct {
	ID      string            `json:"id"`
	Key     string            `json:"key"`
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers"`
}

type record struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Size   int64  `json:"size"`
}

// api calls the upload route as alice.
func (s *site) api(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.base()+"/uploads"+path, rd)
	req.SetBasicAuth(user, password)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusFound {
		return resp.StatusCode, []byte(resp.Header.Get("Location"))
	}
	return resp.StatusCode, b
}

func (s *site) create(t *testing.T, filename string, size int, typ string) created {
	t.Helper()
	status, body := s.api(t, http.MethodPost, "/", map[string]any{"filename": filename, "size": size, "type": typ})
	if status != http.StatusCreated {
		t.Fatalf("create: %d %s", status, body)
	}
	var c created
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// put sends body to the presigned URL with the signed headers, type
// replacing Content-Type when set.
func put(t *testing.T, c created, body []byte, typ string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(c.Method, c.URL, bytes.NewReader(body))
	for k, v := range c.Headers {
		if !strings.EqualFold(k, "Content-Length") {
			req.Header.Set(k, v)
		}
	}
	if typ != "" {
		req.Header.Set("Content-Type", typ)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (s *site) complete(t *testing.T, id string) record {
	t.Helper()
	status, body := s.api(t, http.MethodPost, "/"+id+"/complete", map[string]any{})
	if status != http.StatusOK {
		t.Fatalf("complete: %d %s", status, body)
	}
	var r record
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// download follows the route's redirect to a presigned GET through Caddy.
func (s *site) download(t *testing.T, id string) []byte {
	t.Helper()
	status, loc := s.api(t, http.MethodGet, "/"+id+"/download", nil)
	if status != http.StatusFound {
		t.Fatalf("download: %d %s", status, loc)
	}
	u, err := url.Parse(string(loc))
	if err != nil || u.Host != realservers.Addr(s.Port) {
		t.Fatalf("download goes to %q, want this site", u.Host)
	}
	resp, err := http.Get(string(loc))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("presigned GET: %d %s", resp.StatusCode, b)
	}
	return b
}

// upload runs create, PUT and complete, and returns the record's id.
func (s *site) upload(t *testing.T, content string) string {
	t.Helper()
	c := s.create(t, "note.txt", len(content), "text/plain")
	if status, body := put(t, c, []byte(content), ""); status != http.StatusOK {
		t.Fatalf("PUT: %d %s", status, body)
	}
	if r := s.complete(t, c.ID); r.Status != "confirmed" {
		t.Fatalf("complete: status %q", r.Status)
	}
	return c.ID
}

func TestListModules(t *testing.T) {
	out, err := exec.Command(binary, "list-modules").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	mods := strings.Fields(string(out))
	for _, want := range []string{
		"http.handlers.upload", "upload.storage.s3", "upload.storage.embedded",
		"embedded_s3", "http.handlers.embedded_s3", "upload.ledger.bolt",
	} {
		if !slices.Contains(mods, want) {
			t.Errorf("list-modules lacks %s", want)
		}
	}
}

func TestUploadThroughEmbeddedServer(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	s.start(t)

	content := "hello, embedded storage\n"
	c := s.create(t, "note.txt", len(content), "text/plain")
	u, err := url.Parse(c.URL)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme+"://"+u.Host != s.base() || !strings.HasPrefix(u.Path, "/caddyupload/") {
		t.Fatalf("presigned URL on %s://%s%s, want this site's /caddyupload/", u.Scheme, u.Host, u.Path)
	}
	if c.Method != http.MethodPut || c.Headers["Content-Type"] != "text/plain" {
		t.Fatalf("method %s headers %v", c.Method, c.Headers)
	}

	// The storage server refuses what the signature does not cover.
	if status, _ := put(t, c, []byte(content+"!"), ""); status != http.StatusForbidden {
		t.Errorf("PUT one byte too many: %d, want 403", status)
	}
	if status, _ := put(t, c, []byte(content[1:]), ""); status != http.StatusForbidden {
		t.Errorf("PUT one byte too few: %d, want 403", status)
	}
	if status, _ := put(t, c, []byte(content), "image/png"); status != http.StatusForbidden {
		t.Errorf("PUT with another type: %d, want 403", status)
	}
	if status, body := s.api(t, http.MethodPost, "/"+c.ID+"/complete", map[string]any{}); status != http.StatusConflict {
		t.Errorf("complete before the upload: %d %s, want 409", status, body)
	}

	if status, body := put(t, c, []byte(content), ""); status != http.StatusOK {
		t.Fatalf("PUT: %d %s", status, body)
	}
	if r := s.complete(t, c.ID); r.Status != "confirmed" || r.Size != int64(len(content)) {
		t.Fatalf("complete: %+v", r)
	}
	if got := s.download(t, c.ID); string(got) != content {
		t.Fatalf("downloaded %q, want %q", got, content)
	}
	stored, err := os.ReadFile(filepath.Join(s.Dir, "s3", "caddyupload", filepath.FromSlash(c.Key)))
	if err != nil || string(stored) != content {
		t.Fatalf("object on disk: %q, %v", stored, err)
	}

	// Unsigned requests never reach the storage server's API.
	for _, req := range []*http.Request{
		mustRequest(t, http.MethodGet, s.base()+"/caddyupload/"+c.Key),
		mustRequest(t, http.MethodGet, s.base()+"/caddyupload"),
		mustRequest(t, http.MethodPut, s.base()+"/caddyupload/other.txt"),
	} {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), `"forbidden"`) {
			t.Errorf("unsigned %s %s: %d %s, want 403 JSON", req.Method, req.URL.Path, resp.StatusCode, body)
		}
	}
	// Other paths are the site's.
	if resp, err := http.Get(s.base() + "/"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("site root: %v %v", resp, err)
	}

	creds := filepath.Join(s.Dir, "s3-credentials.json")
	fi, err := os.Stat(creds)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("generated credentials %s: %v %v, want mode 0600", creds, fi, err)
	}
}

func TestReloadKeepsServerAndStopEndsIt(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	s.start(t)
	id := s.upload(t, "before reload")
	pid := s.serverPID(t)

	// A config that differs (Caddy skips identical ones) and keeps the
	// embedded server's settings.
	s.MaxSize = "2MiB"
	if status, body := s.load(t); status != http.StatusOK {
		t.Fatalf("reload: %d %s", status, body)
	}
	if got := s.serverPID(t); got != pid {
		t.Fatalf("embedded server pid %d after reload, want %d", got, pid)
	}
	if got := s.download(t, id); string(got) != "before reload" {
		t.Fatalf("object after reload: %q", got)
	}
	s.upload(t, "after reload")

	// Settings of a running server cannot change: the reload fails and
	// the old config keeps serving with the same server.
	s.S3Port++
	status, body := s.load(t)
	if status == http.StatusOK || !strings.Contains(body, "restart Caddy to change embedded_s3 settings") {
		t.Fatalf("reload with another listen address: %d %s", status, body)
	}
	if got := s.serverPID(t); got != pid {
		t.Fatalf("embedded server pid %d after a refused reload, want %d", got, pid)
	}
	s.upload(t, "after refused reload")

	s.stop(t)
	if pids := embeddedServers(t, filepath.Join(s.Dir, "s3")); len(pids) != 0 {
		t.Fatalf("embedded server still running after Caddy stopped: %v", pids)
	}
}

func TestServerDiesWithCaddy(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	s.start(t)
	pid := s.serverPID(t)
	t.Cleanup(func() {
		// Only if that pid is still this test's server.
		if slices.Contains(embeddedServers(t, filepath.Join(s.Dir, "s3")), pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	s.proc.Kill() // SIGKILL: no Stop, no cleanup
	waitFor(t, "the orphaned embedded server to exit", func() bool { return !alive(pid) })
}

func TestCredentialsFromEnvironment(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	s.S3Options = "access_key_id {env.TEST_S3_KEY}\n\t\tsecret_access_key {env.TEST_S3_SECRET}"
	const key, secret = "TESTKEYFROMENV000001", "test-secret-from-the-environment-0123456789"
	s.start(t, "TEST_S3_KEY="+key, "TEST_S3_SECRET="+secret)

	c := s.create(t, "a.txt", 1, "text/plain")
	if !strings.Contains(c.URL, "X-Amz-Credential="+key) {
		t.Fatalf("presigned URL not signed with the configured key")
	}
	if status, body := put(t, c, []byte("a"), ""); status != http.StatusOK {
		t.Fatalf("PUT: %d %s", status, body)
	}
	s.complete(t, c.ID)

	if _, err := os.Stat(filepath.Join(s.Dir, "s3-credentials.json")); !os.IsNotExist(err) {
		t.Errorf("credentials were generated although configured: %v", err)
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(s.serverPID(t)), "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(cmdline, []byte(secret)) {
		t.Error("the secret is on the embedded server's command line")
	}
	resp, err := http.Get("http://" + realservers.Addr(s.Admin) + "/config/")
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if bytes.Contains(cfg, []byte(secret)) || !bytes.Contains(cfg, []byte("{env.TEST_S3_SECRET}")) {
		t.Errorf("the running config does not keep the secret as a placeholder: %s", cfg)
	}
	if strings.Contains(s.proc.Output(), secret) {
		t.Error("the secret appears in Caddy's output")
	}
}

func mustRequest(t *testing.T, method, u string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestServerRestartedAfterCrash(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	s.start(t)
	id := s.upload(t, "before the crash")
	pid := s.serverPID(t)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the embedded server to be restarted", func() bool {
		return strings.Contains(s.proc.Output(), "embedded S3 server restarted")
	})
	if got := s.serverPID(t); got == pid {
		t.Fatalf("the killed server (pid %d) still runs", pid)
	}
	if got := s.download(t, id); string(got) != "before the crash" {
		t.Fatalf("object after restart: %q", got)
	}
	s.upload(t, "after the crash")
}
