package realservers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresServer is a throwaway PostgreSQL cluster on loopback: trust
// authentication for the superuser "postgres", fsync on (the ledger's
// durability is what its tests are about), a data directory that is
// removed when the server stops.
type PostgresServer struct {
	Port int
	// Dir holds the data directory, the Unix socket and the log.
	Dir string

	bin  string
	cred *syscall.Credential // the postgres user's, when run by root

	mu   sync.Mutex
	proc *Process
}

// PostgresBinDir finds PostgreSQL's programs: CADDYUPLOAD_PG_BIN (set by
// scripts/postgres.sh), else the newest /usr/lib/postgresql/*/bin.
func PostgresBinDir() (string, error) {
	if dir := os.Getenv("CADDYUPLOAD_PG_BIN"); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err != nil {
			return "", fmt.Errorf("CADDYUPLOAD_PG_BIN=%s: %w", dir, err)
		}
		return dir, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(dirs) == 0 {
		return "", errors.New("PostgreSQL not found: set CADDYUPLOAD_PG_BIN or run scripts/postgres.sh (installs Debian's postgresql)")
	}
	// Newest major version first: numeric, so 10 sorts after 9.
	major := func(p string) int {
		n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
		return n
	}
	sort.Slice(dirs, func(i, j int) bool { return major(dirs[i]) > major(dirs[j]) })
	return filepath.Dir(dirs[0]), nil
}

// StartPostgres initdbs and starts a PostgreSQL of its own for t (about
// 1.5 s) and stops it when t ends. A missing PostgreSQL fails the test; in
// the fast tier (-short) the test is skipped instead.
func StartPostgres(t testing.TB) *PostgresServer {
	t.Helper()
	RealOnly(t, "PostgreSQL")
	srv, err := startPostgres()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.stopAndRemove)
	return srv
}

// Postgres returns the DSN of a fresh database for t: on the package's
// shared server when the package's TestMain is PostgresMain, else on a
// server of t's own.
func Postgres(t testing.TB) string {
	t.Helper()
	if srv := sharedPG(t); srv != nil {
		return srv.NewDatabase(t)
	}
	return StartPostgres(t).NewDatabase(t)
}

// sharedPostgres is the server PostgresMain's tests share, started on
// first use.
var sharedPostgres struct {
	mu     sync.Mutex
	active bool // PostgresMain is running
	srv    *PostgresServer
	err    error
}

// PostgresMain runs a package's tests with one PostgreSQL shared by every
// Postgres(t) call (each still gets a database of its own), and stops it
// when they are done:
//
//	func TestMain(m *testing.M) { realservers.PostgresMain(m) }
func PostgresMain(m *testing.M) {
	sharedPostgres.mu.Lock()
	sharedPostgres.active = true
	sharedPostgres.mu.Unlock()
	code := m.Run()
	StopSharedPostgres()
	os.Exit(code)
}

// SharedPostgres is the package's shared server (see PostgresMain), or a
// server of t's own when the package does not share one.
func SharedPostgres(t testing.TB) *PostgresServer {
	t.Helper()
	if srv := sharedPG(t); srv != nil {
		return srv
	}
	return StartPostgres(t)
}

func sharedPG(t testing.TB) *PostgresServer {
	t.Helper()
	sharedPostgres.mu.Lock()
	defer sharedPostgres.mu.Unlock()
	if !sharedPostgres.active {
		return nil
	}
	RealOnly(t, "PostgreSQL")
	if sharedPostgres.err != nil {
		t.Fatalf("shared PostgreSQL: %v", sharedPostgres.err) // failed once: fail every user, fast
	}
	if sharedPostgres.srv == nil {
		sharedPostgres.srv, sharedPostgres.err = startPostgres()
		if sharedPostgres.err != nil {
			t.Fatalf("shared PostgreSQL: %v", sharedPostgres.err)
		}
	}
	if p := sharedPostgres.srv.process(); p.Exited() {
		t.Fatalf("shared PostgreSQL exited:\n%s", p.Output())
	}
	return sharedPostgres.srv
}

// StopSharedPostgres stops the shared server, if one was started, and
// removes its data.
func StopSharedPostgres() {
	sharedPostgres.mu.Lock()
	defer sharedPostgres.mu.Unlock()
	if sharedPostgres.srv != nil {
		sharedPostgres.srv.stopAndRemove()
		sharedPostgres.srv = nil
	}
}

func startPostgres() (*PostgresServer, error) {
	bin, err := PostgresBinDir()
	if err != nil {
		return nil, err
	}
	port, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	// Not t.TempDir: its parents are private to root, and the server runs
	// as the postgres user, which must reach its data directory.
	dir, err := os.MkdirTemp("", "caddyupload-pg-")
	if err != nil {
		return nil, err
	}
	srv := &PostgresServer{Port: port[0], Dir: dir, bin: bin}
	if err := srv.init(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := srv.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return srv, nil
}

// init runs initdb. PostgreSQL refuses to run as root: when the tests run as
// root, initdb and the server run as the postgres user the Debian package
// creates, on a directory handed over to it.
func (s *PostgresServer) init() error {
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("PostgreSQL refuses to run as root and there is no postgres user to run it as (run scripts/postgres.sh): %w", err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(s.Dir, int(uid), int(gid)); err != nil {
			return err
		}
	}
	// -N: initdb's own fsyncs only protect the empty cluster against a
	// machine crash during the test; the server itself runs with fsync on.
	cmd := exec.Command(filepath.Join(s.bin, "initdb"), "-N", "-D", s.dataDir(), "-A", "trust", "-U", "postgres",
		"-E", "UTF8", "--locale=C.UTF-8")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}
	return nil
}

func (s *PostgresServer) dataDir() string { return filepath.Join(s.Dir, "data") }

func (s *PostgresServer) process() *Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc
}

// Start starts the server on its data directory and port and waits until
// it takes connections: first start, or again after Kill or Stop. The
// postmaster is run directly (not through pg_ctl or runuser, which would
// leave it a grandchild) so that it dies with the test binary.
func (s *PostgresServer) Start() error {
	args := []string{"-D", s.dataDir(), "-p", strconv.Itoa(s.Port), "-k", s.Dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=on", "-c", "synchronous_commit=on",
		"-c", "shared_buffers=32MB", "-c", "max_connections=200"}
	// After a kill -9, backends of the old postmaster may hold its shared
	// memory for a moment, and the new one refuses to start until they are
	// gone: try again for a while.
	deadline := time.Now().Add(30 * time.Second)
	for {
		cmd := exec.Command(filepath.Join(s.bin, "postgres"), args...)
		out := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGKILL, Setpgid: true}
		// Backends inherit the output pipe; after a kill -9 of the
		// postmaster they may hold it a moment longer than it lives.
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start postgres: %w", err)
		}
		p := &Process{Name: "postgres", cmd: cmd, out: out, done: make(chan struct{})}
		go func() { _ = cmd.Wait(); close(p.done) }()
		err := p.WaitReady(30*time.Second, func(ctx context.Context) error {
			c, err := pgx.Connect(ctx, s.DSN("postgres"))
			if err != nil {
				return err
			}
			defer c.Close(ctx)
			return c.Ping(ctx)
		})
		if err == nil {
			s.mu.Lock()
			s.proc = p
			s.mu.Unlock()
			return nil
		}
		p.Kill()
		if !strings.Contains(p.Output(), "pre-existing shared memory block") || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Kill is a crash: kill -9 of the postmaster named in postmaster.pid. Its
// backends notice and exit by themselves, as after a real crash.
func (s *PostgresServer) Kill(t testing.TB) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dataDir(), "postmaster.pid"))
	if err != nil {
		t.Fatalf("postmaster.pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		t.Fatalf("postmaster.pid: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	if p := s.process(); p != nil && p.Pid() == pid {
		<-p.done
	}
}

// Stop is `pg_ctl -m fast stop`: SIGINT to the postmaster, which rolls back
// open transactions, disconnects clients and shuts down cleanly.
func (s *PostgresServer) Stop() {
	p := s.process()
	if p == nil || p.Exited() {
		return
	}
	_ = syscall.Kill(p.Pid(), syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.Kill()
	}
}

func (s *PostgresServer) stopAndRemove() {
	s.Stop()
	_ = os.RemoveAll(s.Dir)
}

// Output is what the current postmaster logged.
func (s *PostgresServer) Output() string {
	if p := s.process(); p != nil {
		return p.Output()
	}
	return ""
}

// DSN is the URL of database db as the superuser (no password: trust).
func (s *PostgresServer) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, db)
}

// NewDatabase creates a database with a fresh name, dropped when t ends,
// and returns its DSN.
func (s *PostgresServer) NewDatabase(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "t_" + hex.EncodeToString(b)
	s.exec(t, "CREATE DATABASE "+name)
	t.Cleanup(func() {
		if p := s.process(); p != nil && !p.Exited() {
			// FORCE: a test that failed may have left connections open.
			_ = s.execErr("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
		}
	})
	return s.DSN(name)
}

func (s *PostgresServer) exec(t testing.TB, sql string) {
	t.Helper()
	if err := s.execErr(sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (s *PostgresServer) execErr(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, sql)
	return err
}
