package embedded

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// servers holds the one server of this Caddy process. Caddy starts a new
// config before it stops the old one, so on a reload the count goes
// 1 → 2 → 1 and the process, its port and its objects stay.
var servers = caddy.NewUsagePool()

const poolKey = "embedded_s3"

// Restarts after a crash back off up to maxBackoff.
const (
	minBackoff = 500 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// server supervises the child process: it restarts it when it exits on its
// own, until Destruct.
type server struct {
	settings settings

	mu   sync.Mutex
	proc *process // the current child

	stop       chan struct{} // closed by Destruct
	supervised chan struct{} // closed when supervise returns
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
	return srv, nil
}

func releaseServer() error {
	_, err := servers.Delete(poolKey)
	return err
}

func startServer(s settings) (*server, error) {
	if err := checkFree(s.listen); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded_s3: data_dir: %v", err)
	}
	proc, err := spawn(s)
	if err != nil {
		return nil, err
	}
	if err := waitReady(s.listen, proc, nil); err != nil {
		_ = proc.terminate()
		return nil, err
	}
	srv := &server{settings: s, proc: proc, stop: make(chan struct{}), supervised: make(chan struct{})}
	go srv.supervise()
	return srv, nil
}

// supervise restarts the child whenever it exits before Destruct.
func (srv *server) supervise() {
	defer close(srv.supervised)
	backoff := minBackoff
	for {
		proc := srv.current()
		select {
		case <-srv.stop:
			return
		case <-proc.done:
		}
		log := caddy.Log().Named("embedded_s3")
		log.Error("embedded S3 server exited; restarting it",
			zap.Int("pid", proc.pid()), zap.Error(proc.err), zap.String("output", proc.out.String()),
			zap.Duration("after", backoff))
		select {
		case <-srv.stop:
			return
		case <-time.After(backoff):
		}
		next, err := srv.restart()
		if err != nil {
			log.Error("restarting the embedded S3 server failed", zap.Error(err))
			// Nothing runs: the loop retries after the next backoff.
			next = exitedProcess(err)
			backoff = min(2*backoff, maxBackoff)
		} else {
			log.Info("embedded S3 server restarted", zap.Int("pid", next.pid()))
			backoff = minBackoff
		}
		srv.mu.Lock()
		srv.proc = next
		srv.mu.Unlock()
	}
}

// restart starts a new child and waits until it answers.
func (srv *server) restart() (*process, error) {
	if err := checkFree(srv.settings.listen); err != nil {
		return nil, err
	}
	proc, err := spawn(srv.settings)
	if err != nil {
		return nil, err
	}
	if err := waitReady(srv.settings.listen, proc, srv.stop); err != nil {
		_ = proc.terminate()
		return nil, err
	}
	return proc, nil
}

func (srv *server) current() *process {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.proc
}

// Destruct stops supervising and stops the child.
func (srv *server) Destruct() error {
	close(srv.stop)
	<-srv.supervised
	return srv.current().terminate()
}

func (srv *server) pid() int { return srv.current().pid() }

// checkFree refuses a port in use: a server already on it would answer the
// health check in the child's place.
func checkFree(listen string) error {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("embedded_s3: listen %s: %v; another process uses it, set another listen address", listen, err)
	}
	return l.Close()
}

// waitReady polls the health path until the server answers, exits, stop is
// closed or startTimeout passes.
func waitReady(listen string, proc *process, stop <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + listen + healthPath
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
		case <-proc.done:
			return fmt.Errorf("embedded_s3: the embedded server exited at start: %s", proc.out.String())
		case <-stop:
			return errors.New("embedded_s3: stopped while starting")
		case <-ctx.Done():
			return fmt.Errorf("embedded_s3: the embedded server did not answer on %s within %s: %s", listen, startTimeout, proc.out.String())
		case <-tick.C:
		}
	}
}

var _ caddy.Destructor = (*server)(nil)
