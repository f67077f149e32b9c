package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

type report struct {
	opts                  options
	started, finished     time.Time
	facts                 []string
	loadBefore, loadAfter string
	routes, companion     map[string][]loadResult
	bytes                 map[string][]bytesRun
	client                *clientResult
	clientLoad            [2]string
	sweeper               *sweepResult
	profile               *profileSummary
	micro                 []microLine
	benchstat             string
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func field(rs []loadResult, f func(loadResult) float64) float64 {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = f(r)
	}
	return median(xs)
}

// ratio is the median over rounds of a/b, each round's pair measured back
// to back.
func ratio(a, b []loadResult) float64 {
	var xs []float64
	for i := range min(len(a), len(b)) {
		if b[i].RPS > 0 {
			xs = append(xs, a[i].RPS/b[i].RPS)
		}
	}
	return median(xs)
}

func errorsOf(rs []loadResult) int64 {
	var n int64
	for _, r := range rs {
		n += r.Errors
	}
	return n
}

func (r *report) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Benchmark results\n\n")
	p("Written by `bench/run.sh` on %s (%s). All figures come from this one run.\n\n", r.started.UTC().Format("2006-01-02 15:04 MST"), r.finished.Sub(r.started).Round(time.Second))
	p("## Summary\n\n")
	p("%s\n", r.summaryTable())
	p("## Machine\n\n")
	for _, f := range r.facts {
		p("- %s\n", f)
	}
	p("- load average before: %s; after: %s\n\n", r.loadBefore, r.loadAfter)
	p("## Method\n\n")
	p("- Everything runs on 127.0.0.1 on this machine: versitygw v1.8.0 (POSIX backend) as the S3 server, Dex for RS256 ID tokens, ")
	p("Caddy (this repository's `caddyupload` binary) with the bench Caddyfile, Uppy Companion 6.2.2 on node %s, and the naive app (`bench/naiveapp`).\n", nodeVersion())
	p("- Load: `bench/loadgen`, a separate process: closed loop, %d keep-alive HTTP/1.1 connections, %s measured after 1 s of warm-up, latencies sorted for p50/p99. ", r.opts.conns, r.opts.duration)
	p("Every variant of a comparison sends the same request (method, bearer token, JSON body) with the same generator.\n")
	p("- Each comparison runs its variants alternately, %d rounds, the first variant rotating; the tables give medians, and a ratio is the median of the per-round ratios (each pair measured back to back). ", r.opts.rounds)
	p("The load generator shares the 2 cores with the server, so absolute rates understate what the server does alone; ratios are the figures to compare.\n")
	p("- `create`: `POST /up/` with a Dex token (verified once, then served from the module's token cache) — policy, key, presigned PUT, fsynced bbolt write. ")
	p("`create-fresh`: the same route with a token never seen before on every request (%d distinct RS256 tokens per round, minted before the round by a local issuer because Dex's password grant costs a bcrypt per token; the run ends when they are used up). ", r.opts.freshTokens)
	p("`sign-part`: `POST /up/{id}/parts {\"numbers\":[n]}` on a 64-part upload per connection. `respond`: `respond \"ok\"` in the same server block.\n")
	p("- CPU per request is the server's utime+stime (from `/proc/<pid>/stat`) over the whole run divided by every request of the run, warm-up included.\n")
	p("- Big upload: %d MiB of random bytes from a temp file. `module`: the Go client (`client/`), 4 parts in parallel, bytes straight to versitygw (route with an `s3` block, not the embedded server). ", r.opts.bigSize>>20)
	p("`module-put`: the same through a route with `multipart_threshold 5GiB`, one presigned PUT. `naive`: one multipart form POST through Caddy's `reverse_proxy` to `bench/naiveapp`, which streams it to versitygw with `PutObject`. %d alternating rounds; peak RSS is VmHWM after resetting it (`clear_refs` 5) before each upload.\n", r.opts.bigRounds)
	p("- Sweeper: %d uploads created through the API on a route with `pending_ttl 5s` and the sweeper off, each with its one-byte object PUT to versitygw; past the deadline a config reload turns the sweeper on (`sweep_interval 1s`); the time is from its first tick to the log line reporting the last record expired (records claimed 100 to a ledger transaction; objects deleted with DeleteObjects, up to 1000 keys a call, one call at a time beside the claiming of the next records).\n\n", r.opts.abandoned)

	if r.routes != nil {
		p("## Create and sign parts vs `respond`\n\n")
		p("| route | req/s | p50 ms | p99 ms | Caddy CPU µs/req | errors | vs respond |\n|---|---:|---:|---:|---:|---:|---:|\n")
		for _, name := range []string{"respond", "create", "create-fresh", "sign-part"} {
			rs := r.routes[name]
			cpu := field(rs, func(l loadResult) float64 { return 1e6 * l.CaddyCPU / max(float64(l.Total), 1) })
			rat := "1"
			if name != "respond" {
				rat = fmt.Sprintf("%.2f×", ratio(rs, r.routes["respond"]))
			}
			p("| %s | %.0f | %.2f | %.2f | %.0f | %d | %s |\n", name, field(rs, rps), field(rs, p50), field(rs, p99), cpu, errorsOf(rs), rat)
		}
		p("\nPer round (req/s):\n\n%s\n", roundsTable(r.routes, []string{"respond", "create", "create-fresh", "sign-part"}))
	}
	if r.companion != nil {
		p("## `/s3/params` vs Uppy Companion\n\n")
		p("| server | req/s | p50 ms | p99 ms | server CPU µs/req | errors |\n|---|---:|---:|---:|---:|---:|\n")
		ours, comp := r.companion["params"], r.companion["companion"]
		p("| caddyupload `/up/s3/params` (token check, POST policy, fsynced record) | %.0f | %.2f | %.2f | %.0f | %d |\n", field(ours, rps), field(ours, p50), field(ours, p99),
			field(ours, func(l loadResult) float64 { return 1e6 * l.CaddyCPU / max(float64(l.Total), 1) }), errorsOf(ours))
		p("| Companion 6.2.2 `/s3/params` (no auth, no record) | %.0f | %.2f | %.2f | %.0f | %d |\n", field(comp, rps), field(comp, p50), field(comp, p99),
			field(comp, func(l loadResult) float64 { return 1e6 * l.OtherCPU / max(float64(l.Total), 1) }), errorsOf(comp))
		p("\nRatio of req/s: **%.1f×** (median of per-round ratios).\n\nPer round (req/s):\n\n%s\n", ratio(ours, comp), roundsTable(r.companion, []string{"params", "companion"}))
	}
	if r.bytes != nil {
		p("## %d MiB upload: through the module vs through the proxy\n\n", r.opts.bigSize>>20)
		p("| path | wall s | MB/s | Caddy CPU s | app CPU s | versitygw CPU s | Caddy peak RSS MiB (before) | app peak RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, name := range []string{"module", "module-put", "naive"} {
			rs := r.bytes[name]
			f := func(g func(bytesRun) float64) float64 {
				xs := make([]float64, len(rs))
				for i, x := range rs {
					xs[i] = g(x)
				}
				return median(xs)
			}
			app := "—"
			appRSS := "—"
			if name == "naive" {
				app = fmt.Sprintf("%.2f", f(func(x bytesRun) float64 { return x.AppCPU }))
				appRSS = fmt.Sprintf("%.0f", f(func(x bytesRun) float64 { return x.AppPeak }))
			}
			wall := f(func(x bytesRun) float64 { return x.Wall })
			p("| %s | %.1f | %.0f | %.2f | %s | %.2f | %.0f (%.0f) | %s |\n", name, wall, float64(r.opts.bigSize)/1e6/wall,
				f(func(x bytesRun) float64 { return x.CaddyCPU }), app, f(func(x bytesRun) float64 { return x.S3CPU }),
				f(func(x bytesRun) float64 { return x.CaddyPeak }), f(func(x bytesRun) float64 { return x.CaddyBefore }), appRSS)
		}
		p("\n")
	}
	if r.client != nil {
		p("%s", r.client.markdown(r.clientLoad[0], r.clientLoad[1]))
	}
	if s := r.sweeper; s != nil {
		p("## Sweeper\n\n")
		p("| abandoned uploads | seconds to expire all | objects left | create req/s while sweeping | create req/s without | ratio |\n|---:|---:|---:|---:|---:|---:|\n")
		p("| %d | %.2f | %d | %.0f | %.0f | %.2f× |\n\n", s.Abandoned, s.Seconds, s.ObjectsLeft, s.During.RPS, s.Without.RPS, s.During.RPS/max(s.Without.RPS, 1))
		p("Creating them took %.1f s (create + one-byte PUT each, 16 at a time); %d of 3 sampled records read back `expired`. The load ran for the %.1f s of the sweep, then as long again without.\n\n", s.CreateSeconds, s.ExpiredConfirmed, s.During.Seconds)
	}
	if r.profile != nil {
		p("%s\n", r.profile.markdown())
	}
	if r.micro != nil {
		p("## Micro-benchmarks\n\n`go test -run '^$' -bench . -benchtime 2s -count 5` in the root package, `client`, `storage/boltledger`, `storage/s3store` and `internal/oidcauth`; medians of 5.\n\n")
		p("| benchmark | ns/op | B/op | allocs/op | other |\n|---|---:|---:|---:|---|\n")
		for _, m := range r.micro {
			p("| %s | %s | %s | %s | %s |\n", m.name, m.nsop, m.bop, m.allocs, m.extra)
		}
		if r.benchstat != "" {
			p("\n<details><summary>benchstat</summary>\n\n```\n%s```\n</details>\n", r.benchstat)
		}
		p("\n")
	}
	// The levers tried on the way, with their before/after, are kept by
	// hand: each was a separate experiment, not something a run repeats.
	if levers, err := os.ReadFile(filepath.Join("bench", "levers.md")); err == nil {
		p("%s", levers)
	}
	return b.String()
}

func rps(l loadResult) float64 { return l.RPS }
func p50(l loadResult) float64 { return l.P50ms }
func p99(l loadResult) float64 { return l.P99ms }

func roundsTable(m map[string][]loadResult, names []string) string {
	var b strings.Builder
	b.WriteString("| round |")
	for _, n := range names {
		b.WriteString(" " + n + " |")
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(names)) + "\n")
	for i := range len(m[names[0]]) {
		fmt.Fprintf(&b, "| %d |", i+1)
		for _, n := range names {
			if i < len(m[n]) {
				fmt.Fprintf(&b, " %.0f |", m[n][i].RPS)
			} else {
				b.WriteString(" |")
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// summaryTable is the table the README carries.
func (r *report) summaryTable() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("| what | candidate | baseline (same run) | ratio | target |\n|---|---|---|---:|---|\n")
	if rt := r.routes; rt != nil {
		resp := rt["respond"]
		line := func(l []loadResult) string {
			return fmt.Sprintf("%.0f req/s, p50 %.2f ms, p99 %.2f ms", field(l, rps), field(l, p50), field(l, p99))
		}
		p("| create upload (cached token) | %s | `respond`: %s | %.2f× | ≥ 0.5× |\n", line(rt["create"]), line(resp), ratio(rt["create"], resp))
		p("| create upload (new token each request) | %s | `respond` | %.2f× | |\n", line(rt["create-fresh"]), ratio(rt["create-fresh"], resp))
		p("| sign one part | %s | `respond` | %.2f× | ≥ 0.7× |\n", line(rt["sign-part"]), ratio(rt["sign-part"], resp))
	}
	if c := r.companion; c != nil {
		p("| `/s3/params` | %.0f req/s | Companion 6.2.2: %.0f req/s | %.1f× | ≥ 20× |\n", field(c["params"], rps), field(c["companion"], rps), ratio(c["params"], c["companion"]))
	}
	if bt := r.bytes; bt != nil {
		med := func(rs []bytesRun, g func(bytesRun) float64) float64 {
			xs := make([]float64, len(rs))
			for i, x := range rs {
				xs[i] = g(x)
			}
			return median(xs)
		}
		cpu := func(x bytesRun) float64 { return x.CaddyCPU }
		mc, nc := med(bt["module"], cpu), med(bt["naive"], cpu)
		wall := func(x bytesRun) float64 { return x.Wall }
		growth := func(x bytesRun) float64 { return x.CaddyPeak - x.CaddyBefore }
		p("| %d MiB upload: Caddy CPU | %.2f s (module) | %.2f s (naive via `reverse_proxy`) + %.2f s app | %.3f× | |\n", r.opts.bigSize>>20, mc, nc,
			med(bt["naive"], func(x bytesRun) float64 { return x.AppCPU }), mc/max(nc, 1e-9))
		p("| %d MiB upload: wall time | %.1f s | %.1f s | %.2f× | |\n", r.opts.bigSize>>20, med(bt["module"], wall), med(bt["naive"], wall), med(bt["module"], wall)/max(med(bt["naive"], wall), 1e-9))
		p("| %d MiB upload: Caddy peak RSS (rise) | %.0f MiB (+%.0f) | %.0f MiB (+%.0f) | | |\n", r.opts.bigSize>>20,
			med(bt["module"], func(x bytesRun) float64 { return x.CaddyPeak }), med(bt["module"], growth),
			med(bt["naive"], func(x bytesRun) float64 { return x.CaddyPeak }), med(bt["naive"], growth))
	}
	if r.client != nil {
		p("%s", r.client.summaryRows())
	}
	if s := r.sweeper; s != nil {
		p("| sweeper: expire + delete %d abandoned uploads | %.2f s | | | |\n", s.Abandoned, s.Seconds)
		p("| create while sweeping | %.0f req/s | %.0f req/s without | %.2f× | |\n", s.During.RPS, s.Without.RPS, s.During.RPS/max(s.Without.RPS, 1))
	}
	for _, m := range r.micro {
		if m.key {
			p("| `%s` | %s ns/op%s | | | |\n", m.name, m.nsop, m.extraShort())
		}
	}
	return b.String()
}

// profileSummary is where Caddy's CPU goes under create load.
type profileSummary struct {
	requests, cpu, wall float64
	load                loadResult
	top                 string
	groups              []profileGroup
}

type profileGroup struct {
	label, fn string
	pct       float64
}

// profileGroups are the functions whose cumulative share tells where a
// create request's CPU goes.
var profileGroups = []struct{ label, fn string }{
	{"everything serving HTTP (net/http conn.serve)", "net/http.(*conn).serve"},
	{"Caddy's server, routing, handle_path", "caddyhttp.(*Server).ServeHTTP"},
	{"upload handler", "caddyupload.(*Handler).ServeHTTP"},
	{"token check (cached)", "caddyupload.(*oidcAuth).authenticate"},
	{"create: all of it", "caddyupload.(*Handler).serveCreate"},
	{"JSON request decode", "caddyupload.decodeBody"},
	{"record + key", "caddyupload.(*Handler).newRecord"},
	{"presign PUT", "s3store.(*Store).PresignPut"},
	{"ledger write, caller side", "boltledger.(*Ledger).Create"},
	{"ledger group-commit writer", "boltledger.(*Ledger).writeLoop"},
	{"JSON answer", "caddyupload.writeJSON"},
	{"fdatasync", "syscall.Fdatasync"},
	{"network reads/writes", "internal/poll.(*FD).Write"},
	{"", "internal/poll.(*FD).Read"},
	{"garbage collection (background)", "runtime.gcBgMarkWorker"},
	{"scheduler", "runtime.schedule"},
}

var cumLine = regexp.MustCompile(`^\s*[\d.]+(?:[mµn]?s)?\s+[\d.]+%\s+[\d.]+%\s+([\d.]+(?:[mµn]?s)?)\s+([\d.]+)%\s+(.+?)(?: \(inline\))?$`)

func summarizeProfile(path string, wall, cpu float64, load loadResult) (*profileSummary, error) {
	top, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=25", path).Output()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof: %w", err)
	}
	cum, err := exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount=2000", path).Output()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof: %w", err)
	}
	s := &profileSummary{requests: load.RPS * wall, cpu: cpu, wall: wall, load: load, top: trimPprof(string(top))}
	pct := map[string]float64{}
	for _, line := range strings.Split(string(cum), "\n") {
		if m := cumLine.FindStringSubmatch(line); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			pct[strings.TrimSpace(m[3])] = v
		}
	}
	for _, g := range profileGroups {
		for fn, v := range pct {
			if strings.HasSuffix(fn, g.fn) || strings.Contains(fn, "/"+g.fn) || fn == g.fn {
				s.groups = append(s.groups, profileGroup{label: g.label, fn: g.fn, pct: v})
				break
			}
		}
	}
	return s, nil
}

// trimPprof drops pprof's header lines that name local files.
func trimPprof(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Time:") {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func (s *profileSummary) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	perReq := 1e6 * s.cpu / max(s.requests, 1)
	p("## Where a create request's CPU goes\n\n")
	p("CPU profile of Caddy from its admin endpoint (`/debug/pprof/profile`) while the create route served %.0f req/s (p50 %.2f ms, p99 %.2f ms): ", s.load.RPS, s.load.P50ms, s.load.P99ms)
	p("Caddy used %.2f of the 2 cores, **%.0f µs of CPU per create**. Shares are cumulative (a function and what it calls), of Caddy's CPU:\n\n", s.cpu/max(s.wall, 1e-9), perReq)
	p("| where | function | share | µs per create |\n|---|---|---:|---:|\n")
	for _, g := range s.groups {
		p("| %s | `%s` | %.1f%% | %.1f |\n", g.label, g.fn, g.pct, g.pct/100*perReq)
	}
	p("\nTop functions by own CPU:\n\n```\n%s\n```\n", strings.TrimSpace(s.top))
	return b.String()
}

// microLine is one benchmark's medians.
type microLine struct {
	name, nsop, bop, allocs, extra string
	key                            bool
}

func (m microLine) extraShort() string {
	if m.extra == "" {
		return ""
	}
	return ", " + m.extra
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// parseMicro reads raw `go test -bench` output (with "pkg:" lines) and
// returns each benchmark's medians over its -count runs.
func parseMicro(path string) []microLine {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	type acc struct{ metrics map[string][]float64 }
	var order []string
	all := map[string]*acc{}
	pkg := ""
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "pkg: ") {
			pkg = strings.TrimPrefix(strings.TrimPrefix(line, "pkg: "), "github.com/caddyupload/caddyupload")
			pkg = strings.TrimPrefix(pkg, "/")
			continue
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		name := strings.TrimPrefix(m[1], "Benchmark")
		if pkg != "" {
			name = pkg + " " + name
		}
		a := all[name]
		if a == nil {
			a = &acc{metrics: map[string][]float64{}}
			all[name] = a
			order = append(order, name)
		}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err == nil {
				a.metrics[f[i+1]] = append(a.metrics[f[i+1]], v)
			}
		}
	}
	var out []microLine
	for _, name := range order {
		a := all[name]
		get := func(unit string) string {
			xs, ok := a.metrics[unit]
			if !ok {
				return ""
			}
			return strconv.FormatFloat(median(xs), 'f', -1, 64)
		}
		l := microLine{name: name, nsop: get("ns/op"), bop: get("B/op"), allocs: get("allocs/op")}
		if v, err := strconv.ParseFloat(l.nsop, 64); err == nil {
			l.nsop = strconv.FormatFloat(v, 'f', 0, 64)
		}
		var extras []string
		for unit, xs := range a.metrics {
			switch unit {
			case "ns/op", "B/op", "allocs/op":
				continue
			}
			extras = append(extras, fmt.Sprintf("%.4g %s", median(xs), unit))
		}
		slices.Sort(extras)
		l.extra = strings.Join(extras, ", ")
		l.key = strings.HasPrefix(name, "Create/") || strings.Contains(name, "boltledger Create") ||
			strings.Contains(name, "Verify") || strings.Contains(name, "PresignPut") || strings.HasPrefix(name, "KeyTemplate") || strings.HasPrefix(name, "SignParts")
		out = append(out, l)
	}
	return out
}

func machineFacts() []string {
	facts := []string{fmt.Sprintf("`nproc`: %d", runtime.NumCPU())}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				_, v, _ := strings.Cut(l, ":")
				facts = append(facts, "CPU: "+strings.TrimSpace(v))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		facts = append(facts, "memory: "+strings.TrimSpace(strings.TrimPrefix(strings.Split(string(b), "\n")[0], "MemTotal:")))
	}
	if out, err := exec.Command("go", "version").Output(); err == nil {
		facts = append(facts, "Go: "+strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("uname", "-sr").Output(); err == nil {
		facts = append(facts, "kernel: "+strings.TrimSpace(string(out)))
	}
	facts = append(facts, "node: "+nodeVersion())
	return facts
}

func nodeVersion() string {
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
