// Command runner starts versitygw, Dex, Caddy with the bench Caddyfile,
// Uppy Companion and the naive application, runs every scenario with
// baseline and candidate alternating, and writes bench/results.md.
// bench/run.sh builds what it needs and calls it; run that instead.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type options struct {
	bin, work, out, companionDir string
	rounds, bigRounds, conns     int
	duration                     time.Duration
	freshTokens                  int
	bigSize, clientSize          int64
	clientRounds                 int
	abandoned                    int
	only                         string
	microRaw, microStat          string
	profile                      time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "", "directory holding caddy, loadgen and naiveapp")
	flag.StringVar(&o.work, "work", "", "scratch directory (data, logs, the big file)")
	flag.StringVar(&o.out, "out", "bench/results.md", "results file")
	flag.StringVar(&o.companionDir, "companion", "bench/companion", "Companion app directory (npm ci done)")
	flag.IntVar(&o.rounds, "rounds", 5, "alternating rounds of each load scenario")
	flag.IntVar(&o.bigRounds, "big-rounds", 3, "alternating rounds of the big upload")
	flag.IntVar(&o.conns, "c", 32, "connections of the load generator")
	flag.DurationVar(&o.duration, "d", 10*time.Second, "measured duration of each load run")
	flag.IntVar(&o.freshTokens, "fresh-tokens", 5000, "distinct tokens per round of the uncached-token run")
	flag.Int64Var(&o.bigSize, "size", 1<<30, "size of the big upload in bytes")
	flag.Int64Var(&o.clientSize, "client-size", 1<<30, "size of the Go client's upload in bytes (client scenario)")
	flag.IntVar(&o.clientRounds, "client-rounds", 5, "alternating rounds of the client scenario")
	flag.IntVar(&o.abandoned, "abandoned", 10000, "abandoned uploads for the sweeper")
	flag.DurationVar(&o.profile, "profile", 10*time.Second, "CPU profile of Caddy under create load (0: none)")
	flag.StringVar(&o.only, "only", "", "comma-separated scenarios to run: bytes,client,routes,companion,sweeper (default all); with a subset, bench/results.md keeps the sections of the others")
	flag.StringVar(&o.microRaw, "micro", "", "raw `go test -bench` output to summarize")
	flag.StringVar(&o.microStat, "benchstat", "", "benchstat output to include")
	flag.Parse()
	log.SetFlags(log.Ltime)
	log.SetPrefix("bench: ")
	if o.bin == "" || o.work == "" {
		log.Fatal("-bin and -work are required")
	}
	if err := run(o); err != nil {
		log.Fatal(err)
	}
}

func (o options) want(s string) bool {
	if o.only == "" {
		return true
	}
	for _, v := range strings.Split(o.only, ",") {
		if v == s {
			return true
		}
	}
	return false
}

// env is everything the scenarios run against.
type env struct {
	o         options
	s3        *s3Server
	dex       *dex
	iss       *issuer
	caddy     *caddy
	naive     *proc
	companion *proc
	compURL   string
	token     string // Dex ID token for alice
}

func run(o options) (err error) {
	rep := &report{started: time.Now(), facts: machineFacts(), loadBefore: loadavg()}
	e := &env{o: o}
	defer e.stopAll()
	// Servers die with the runner: stop them cleanly on Ctrl-C too.
	sigs := make(chan os.Signal, 1)
	signalNotify(sigs)
	go func() { <-sigs; e.stopAll(); os.Exit(130) }()

	vgw := os.Getenv("CADDYUPLOAD_VERSITYGW_BIN")
	dexBin := os.Getenv("CADDYUPLOAD_DEX_BIN")
	if vgw == "" || dexBin == "" {
		return errors.New("CADDYUPLOAD_VERSITYGW_BIN and CADDYUPLOAD_DEX_BIN must be set (eval \"$(scripts/servers.sh)\")")
	}
	log.Print("starting versitygw, Dex, the naive app and Caddy")
	if e.s3, err = startVersityGW(o.work, vgw); err != nil {
		return err
	}
	if e.dex, err = startDex(o.work, dexBin); err != nil {
		return err
	}
	if e.token, err = e.dex.token(); err != nil {
		return err
	}
	if e.iss, err = startIssuer(); err != nil {
		return err
	}
	naivePort := freePort()
	if e.naive, err = start("naiveapp", o.work, filepath.Join(o.bin, "naiveapp"),
		[]string{"-listen", fmt.Sprintf("127.0.0.1:%d", naivePort)},
		[]string{"S3_ENDPOINT=" + e.s3.endpoint, "S3_BUCKET=" + bucket, "S3_ACCESS_KEY_ID=" + e.s3.key, "S3_SECRET_ACCESS_KEY=" + e.s3.secret}); err != nil {
		return err
	}
	if err := e.naive.WaitReady(10*time.Second, dialReady(fmt.Sprintf("127.0.0.1:%d", naivePort))); err != nil {
		return err
	}
	conf := caddyConf{Dir: o.work, S3: e.s3.endpoint, Dex: e.dex.issuer, Issuer: e.iss.url, Port: freePort(), Admin: freePort(), Naive: naivePort}
	if e.caddy, err = startCaddy(o.work, filepath.Join(o.bin, "caddy"), conf, e.s3); err != nil {
		return err
	}

	// The big upload first, while Caddy's heap holds nothing from the
	// load runs, so that its peak RSS is about the upload alone.
	if o.want("bytes") {
		if rep.bytes, err = e.bytesScenario(); err != nil {
			return fmt.Errorf("bytes: %w", err)
		}
	}
	if o.want("client") {
		before := loadavg()
		if rep.client, err = e.clientScenario(); err != nil {
			return fmt.Errorf("client: %w", err)
		}
		rep.clientLoad = [2]string{before, loadavg()}
	}
	if o.want("routes") {
		if rep.routes, err = e.routesScenario(); err != nil {
			return fmt.Errorf("routes: %w", err)
		}
		if o.profile > 0 {
			if rep.profile, err = e.profileCreate(); err != nil {
				return fmt.Errorf("profile: %w", err)
			}
		}
	}
	if o.want("companion") {
		if rep.companion, err = e.companionScenario(); err != nil {
			return fmt.Errorf("companion: %w", err)
		}
	}
	if o.want("sweeper") {
		if rep.sweeper, err = e.sweeperScenario(); err != nil {
			return fmt.Errorf("sweeper: %w", err)
		}
	}
	if o.microRaw != "" {
		rep.micro = parseMicro(o.microRaw)
		if o.microStat != "" {
			b, _ := os.ReadFile(o.microStat)
			rep.benchstat = string(b)
		}
	}
	rep.loadAfter = loadavg()
	rep.finished = time.Now()
	rep.opts = o
	doc := rep.markdown()
	if o.only != "" {
		// A subset: the sections of the scenarios that did not run stay
		// as the last run wrote them.
		if old, err := os.ReadFile(o.out); err == nil {
			doc = mergeResults(string(old), doc, rep.started, o.only)
		}
	}
	if err := os.WriteFile(o.out, []byte(doc), 0o644); err != nil {
		return err
	}
	log.Printf("wrote %s", o.out)
	return nil
}

func (e *env) stopAll() {
	for _, p := range []*proc{e.companionProc(), e.caddyProc(), e.naive, e.dexProc(), e.s3Proc()} {
		p.Stop(10 * time.Second)
	}
	if e.iss != nil {
		_ = e.iss.srv.Close()
	}
}

func (e *env) caddyProc() *proc {
	if e.caddy == nil {
		return nil
	}
	return e.caddy.proc
}
func (e *env) dexProc() *proc {
	if e.dex == nil {
		return nil
	}
	return e.dex.proc
}
func (e *env) s3Proc() *proc {
	if e.s3 == nil {
		return nil
	}
	return e.s3.proc
}
func (e *env) companionProc() *proc { return e.companion }

// loadResult is what bench/loadgen prints.
type loadResult struct {
	Requests int64          `json:"requests"`
	Errors   int64          `json:"errors"`
	Seconds  float64        `json:"seconds"`
	RPS      float64        `json:"rps"`
	P50ms    float64        `json:"p50_ms"`
	P99ms    float64        `json:"p99_ms"`
	Statuses map[string]int `json:"statuses"`
	Error    string         `json:"first_error"`
	Total    int64          `json:"total"` // warm-up included
	CaddyCPU float64        `json:"-"`     // seconds of Caddy CPU during the run
	OtherCPU float64        `json:"-"`     // of the peer server, when there is one
}

// loadgenCmd prepares a run of the load generator (a separate process, so
// that it never shares a Go runtime with what it measures).
func (e *env) loadgenCmd(args ...string) *exec.Cmd {
	args = append([]string{"-c", fmt.Sprint(e.o.conns)}, args...)
	cmd := exec.Command(filepath.Join(e.o.bin, "loadgen"), args...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

func (e *env) load(args ...string) (loadResult, error) {
	args = append([]string{"-d", e.o.duration.String()}, args...)
	cmd := e.loadgenCmd(args...)
	cpu0 := cpuSeconds(e.caddy.Pid())
	out, err := cmd.Output()
	if err != nil {
		return loadResult{}, fmt.Errorf("loadgen %v: %w", args, err)
	}
	return decodeLoad(out, cpuSeconds(e.caddy.Pid())-cpu0)
}

func decodeLoad(out []byte, caddyCPU float64) (loadResult, error) {
	var r loadResult
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("loadgen output %q: %w", out, err)
	}
	r.CaddyCPU = caddyCPU
	return r, nil
}

func signalNotify(c chan os.Signal) { signal.Notify(c, syscall.SIGINT, syscall.SIGTERM) }
