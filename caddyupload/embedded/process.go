package embedded

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// stopGrace is how long the server may take to finish in-flight requests
// after SIGTERM before it is killed.
const stopGrace = 10 * time.Second

// Environment variables that carry the credentials to the child: argv is
// visible to every user of the machine, the environment is not.
const (
	envAccessKeyID     = "CADDYUPLOAD_EMBEDDED_S3_ACCESS_KEY_ID"
	envSecretAccessKey = "CADDYUPLOAD_EMBEDDED_S3_SECRET_ACCESS_KEY"
)

// process is one run of the child: this binary's `embedded-s3` command.
type process struct {
	cmd   *exec.Cmd // nil when it could not be started
	stdin io.Closer
	out   *tail
	done  chan struct{} // closed once the process has been reaped
	err   error         // how it ended, once done
}

func spawn(s settings) (*process, error) {
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
	p := &process{cmd: cmd, stdin: stdin, out: newTail(20), done: make(chan struct{})}
	go p.wait(stdout)
	return p, nil
}

// exitedProcess stands for a child that could not be started.
func exitedProcess(err error) *process {
	p := &process{out: newTail(1), done: make(chan struct{}), err: err}
	close(p.done)
	return p
}

// wait logs the child's output line by line at Debug, then reaps it.
func (p *process) wait(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		p.out.add(line)
		// The current default logger: the config that started the child
		// may have been replaced by a reload.
		caddy.Log().Named("embedded_s3.server").Debug(line)
	}
	_, _ = io.Copy(io.Discard, stdout)
	p.err = p.cmd.Wait()
	close(p.done)
}

// terminate sends SIGTERM, which lets the server finish in-flight
// requests, and SIGKILL after stopGrace.
func (p *process) terminate() error {
	if p.cmd == nil {
		return nil
	}
	_ = p.stdin.Close()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("embedded_s3: the embedded server did not stop within %s and was killed", stopGrace)
}

func (p *process) pid() int {
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// withoutCredentials drops inherited credential variables so the child gets
// exactly the ones it is given.
func withoutCredentials(env []string) []string {
	out := make([]string, 0, len(env)+2)
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
