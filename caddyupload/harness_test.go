package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

// binary is this module's Caddy, built once for all tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "caddyupload-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "caddyupload")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the binary:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	user     = "alice"
	password = "correct horse"
)

var passwordHash = func() string {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
}()

// site is one Caddy instance: an upload route on the embedded server.
type site struct {
	Dir       string // temporary: data, config, ledger
	Admin     int
	Port      int
	S3Port    int
	MaxSize   string
	S3Options string // more lines for the embedded_s3 global option
	Global    string // more global options
	Upload    string // more lines for the upload block
	Site      string // more lines for the site block

	proc *realservers.Process
}

var caddyfileTemplate = template.Must(template.New("Caddyfile").Parse(`{
	admin 127.0.0.1:{{.Admin}}
	{{.Global}}
	embedded_s3 {
		listen 127.0.0.1:{{.S3Port}}
		data_dir {{.Dir}}/s3
		{{.S3Options}}
	}
}

http://127.0.0.1:{{.Port}} {
	{{.Site}}
	embedded_s3
	handle_path /uploads/* {
		basic_auth {
			` + user + ` "{{.Hash}}"
		}
		upload {
			ledger {{.Dir}}/ledger.db
			max_size {{.MaxSize}}
			types text/plain image/png
			sweeper off
			{{.Upload}}
		}
	}
	respond "app" 200
}
`))

func newSite(t *testing.T) *site {
	t.Helper()
	return &site{
		Dir:     t.TempDir(),
		Admin:   realservers.FreePort(t),
		Port:    realservers.FreePort(t),
		S3Port:  realservers.FreePort(t),
		MaxSize: "1MiB",
	}
}

func (s *site) Hash() string { return passwordHash }

func (s *site) caddyfile(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := caddyfileTemplate.Execute(&b, s); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func (s *site) base() string { return "http://" + realservers.Addr(s.Port) }

// start runs `caddyupload run` on the site's Caddyfile with env added, and
// waits until the config is served.
func (s *site) start(t *testing.T, env ...string) {
	t.Helper()
	path := filepath.Join(s.Dir, "Caddyfile")
	if err := os.WriteFile(path, s.caddyfile(t), 0o600); err != nil {
		t.Fatal(err)
	}
	env = append(env,
		"HOME="+s.Dir,
		"XDG_DATA_HOME="+filepath.Join(s.Dir, "xdg-data"),
		"XDG_CONFIG_HOME="+filepath.Join(s.Dir, "xdg-config"),
	)
	proc, err := realservers.Start("caddy", binary, []string{"run", "--config", path}, env)
	if err != nil {
		t.Fatal(err)
	}
	s.proc = proc
	t.Cleanup(func() {
		proc.Stop(15 * time.Second)
		if t.Failed() {
			t.Logf("caddy output:\n%s", proc.Output())
		}
	})
	err = proc.WaitReady(60*time.Second, func(context.Context) error {
		if !strings.Contains(proc.Output(), "serving initial configuration") {
			return fmt.Errorf("config not served yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// load posts a new Caddyfile to the admin API, as `caddy reload` does.
func (s *site) load(t *testing.T) (int, string) {
	t.Helper()
	resp, err := http.Post("http://"+realservers.Addr(s.Admin)+"/load", "text/caddyfile", bytes.NewReader(s.caddyfile(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// stop asks Caddy to exit through its admin API and waits until it has.
func (s *site) stop(t *testing.T) {
	t.Helper()
	resp, err := http.Post("http://"+realservers.Addr(s.Admin)+"/stop", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitFor(t, "caddy to exit", s.proc.Exited)
}

// serverPID finds the embedded server of this site by its data dir.
func (s *site) serverPID(t *testing.T) int {
	t.Helper()
	pids := embeddedServers(t, filepath.Join(s.Dir, "s3"))
	if len(pids) != 1 {
		t.Fatalf("%d embedded servers for %s, want 1: %v", len(pids), s.Dir, pids)
	}
	return pids[0]
}

// embeddedServers lists the live `embedded-s3` processes on dataDir.
func embeddedServers(t *testing.T, dataDir string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 1 && args[1] == "embedded-s3" && slices.Contains(args, dataDir) && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// alive is false for processes that are gone or zombies (exited, not yet
// reaped by whatever adopted them).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesized command name.
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] != 'Z'
}

// waitFor polls cond until it holds; the deadline only bounds a failing
// test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
