package embedded

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// servers holds the one server process of this Caddy process. Caddy starts
// a new config before it stops the old one, so on a reload the count goes
// 1 → 2 → 1 and the process, its port and its objects stay.
var servers = caddy.NewUsagePool()

const poolKey = "embedded_s3"

// stopGrace is how long the server may take to finish in-flight requests
// after SIGTERM before it is killed.
const stopGrace = 10 * time.Second

// Environment variables that carry the credentials to the child: argv is
// visible to every user of the machine, the environment is not.
const (
	envAccessKeyID     = "CADDYUPLOAD_EMBEDDED_S3_ACCESS_KEY_ID"
	envSecretAccessKey = "CADDYUPLOAD_EMBEDDED_S3_SECRET_ACCESS_KEY"
)

// server is a running child process.
type server struct {
	settings settings
	cmd      *exec.Cmd
	stdin    io.Closer
	out      *tail
	done     chan struct{} // closed when the process has been waited for
	stopping atomic.Bool
}

// acquireServer returns the running server, or starts one and waits until it
// answers.
func acquireServer(s settings) (*server, error) {
	val, loaded, err := servers.LoadOrNew(poolKey, func() (caddy.Destructor, error) {
		return startServer(s)
	})
	if err != nil {
		return nil, err
	}
	srv := val.(*server)
	if loaded && srv.settings != s {
		_ = releaseServer()
		return nil, errors.New("embedded_s3: listen, data_dir, region and credentials differ from those of the running embedded server; restart Caddy to change embedded_s3 settings")
	}
	if loaded && srv.exited() {
		_ = releaseServer()
		return nil, fmt.Errorf("embedded_s3: the embedded server exited; restart Caddy: %s", srv.out.String())
	}
	return srv, nil
}

func releaseServer() error {
	_, err := servers.Delete(poolKey)
	return err
}

func startServer(s settings) (*server, error) {
	// A server already on the port would answer the health check in our
	// child's place.
	l, err := net.Listen("tcp", s.listen)
	if err != nil {
		return nil, fmt.Errorf("embedded_s3: listen %s: %v; another process uses it, set another listen address", s.listen, err)
	}
	_ = l.Close()
	if err := os.MkdirAll(s.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded_s3: data_dir: %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("embedded_s3: locating this binary: %v", err)
	}

	cmd := exec.Command(exe, "embedded-s3",
		"--listen", s.listen, "--data-dir", s.dataDir, "--region", s.region, "--health", healthPath)
	cmd.Env = append(withoutCredentials(os.Environ()),
		envAccessKeyID+"="+s.accessKeyID, envSecretAccessKey+"="+s.secret)
	cmd.SysProcAttr = childProcAttr()
	// The child exits when this pipe closes, i.e. when Caddy is gone for
	// whatever reason.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("embedded_s3: starting %s: %v", exe, err)
	}
	srv := &server{settings: s, cmd: cmd, stdin: stdin, out: newTail(20), done: make(chan struct{})}
	go srv.wait(stdout)

	if err := srv.waitReady(); err != nil {
		_ = srv.Destruct()
		return nil, err
	}
	return srv, nil
}

// wait logs the child's output line by line, then reaps it.
func (srv *server) wait(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		srv.out.add(line)
		// The current default logger: the one of the config that started
		// the child may have been replaced by a reload.
		caddy.Log().Named("embedded_s3.server").Debug(line)
	}
	_, _ = io.Copy(io.Discard, stdout)
	err := srv.cmd.Wait()
	close(srv.done)
	if !srv.stopping.Load() {
		caddy.Log().Named("embedded_s3").Error("embedded S3 server exited; uploads fail until Caddy is restarted",
			zap.Int("pid", srv.pid()), zap.Error(err), zap.String("output", srv.out.String()))
	}
}

// waitReady polls the health path until the server answers, exits or
// startTimeout passes.
func (srv *server) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + srv.settings.listen + healthPath
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := client.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-srv.done:
			return fmt.Errorf("embedded_s3: the embedded server exited at start: %s", srv.out.String())
		case <-ctx.Done():
			return fmt.Errorf("embedded_s3: the embedded server did not answer on %s within %s: %s", srv.settings.listen, startTimeout, srv.out.String())
		case <-tick.C:
		}
	}
}

// Destruct stops the child: SIGTERM lets it finish in-flight requests, and
// SIGKILL follows after stopGrace.
func (srv *server) Destruct() error {
	srv.stopping.Store(true)
	_ = srv.stdin.Close()
	_ = srv.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-srv.done:
		return nil
	case <-time.After(stopGrace):
	}
	_ = srv.cmd.Process.Kill()
	<-srv.done
	return fmt.Errorf("embedded_s3: the embedded server did not stop within %s and was killed", stopGrace)
}

func (srv *server) pid() int { return srv.cmd.Process.Pid }

func (srv *server) exited() bool {
	select {
	case <-srv.done:
		return true
	default:
		return false
	}
}

// withoutCredentials drops inherited credential variables so the child gets
// exactly the ones it is given.
func withoutCredentials(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if strings.HasPrefix(kv, envAccessKeyID+"=") || strings.HasPrefix(kv, envSecretAccessKey+"=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// tail keeps the last lines the child printed, for error messages.
type tail struct {
	mu    sync.Mutex
	lines []string
	max   int
}

func newTail(max int) *tail { return &tail{max: max} }

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == t.max {
		t.lines = append(t.lines[:0], t.lines[1:]...)
	}
	t.lines = append(t.lines, line)
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return "(no output)"
	}
	return strings.Join(t.lines, "\n")
}

var _ caddy.Destructor = (*server)(nil)
