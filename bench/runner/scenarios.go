package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/caddyupload/caddyupload/client"
)

const (
	createBody = `{"filename":"holiday photo.jpg","size":2400000,"type":"image/jpeg","metadata":{"album":"summer"}}`
	// 1 GiB in 16 MiB parts: 64 parts to sign.
	multipartBody = `{"filename":"video.bin","size":1073741824,"type":"application/octet-stream"}`
	paramsQuery   = "/s3/params?filename=photo.jpg&type=image%2Fjpeg"
)

// variant is one side of an alternating comparison.
type variant struct {
	name string
	args func(round int) ([]string, error)
}

// alternate runs the variants in turn, rounds times, rotating which goes
// first so that drift on a noisy machine hits every side alike.
func (e *env) alternate(rounds int, vs []variant, hook func() (cpu float64)) (map[string][]loadResult, error) {
	out := map[string][]loadResult{}
	for r := 0; r < rounds; r++ {
		for i := range vs {
			v := vs[(i+r)%len(vs)]
			args, err := v.args(r)
			if err != nil {
				return nil, err
			}
			var other0 float64
			if hook != nil {
				other0 = hook()
			}
			res, err := e.load(args...)
			if err != nil {
				return nil, err
			}
			if hook != nil {
				res.OtherCPU = hook() - other0
			}
			log.Printf("round %d %-14s %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  errors %d %s",
				r+1, v.name, res.RPS, res.P50ms, res.P99ms, res.Errors, res.Error)
			out[v.name] = append(out[v.name], res)
		}
	}
	return out, nil
}

// routesScenario: create and sign parts against `respond` on one server.
func (e *env) routesScenario() (map[string][]loadResult, error) {
	log.Printf("routes: %d rounds of %s, %d connections", e.o.rounds, e.o.duration, e.o.conns)
	tokFile := filepath.Join(e.o.work, "tokens.txt")
	base := e.caddy.base
	vs := []variant{
		{"respond", func(int) ([]string, error) {
			return []string{"-url", base + "/ok/", "-token", e.token, "-body", createBody, "-expect", "200"}, nil
		}},
		{"create", func(int) ([]string, error) {
			return []string{"-url", base + "/up/", "-token", e.token, "-body", createBody, "-expect", "201"}, nil
		}},
		{"create-fresh", func(int) ([]string, error) {
			// Minted before the run, outside the measurement.
			toks, err := e.iss.mint(e.o.freshTokens, 2)
			if err != nil {
				return nil, err
			}
			if err := os.WriteFile(tokFile, []byte(strings.Join(toks, "\n")), 0o600); err != nil {
				return nil, err
			}
			return []string{"-url", base + "/fresh/", "-tokens", tokFile, "-body", createBody, "-expect", "201"}, nil
		}},
		{"sign-part", func(int) ([]string, error) {
			return []string{"-url", base + "/up/", "-parts", "-token", e.token, "-body", multipartBody, "-expect", "200"}, nil
		}},
	}
	return e.alternate(e.o.rounds, vs, nil)
}

// profileCreate takes a CPU profile of Caddy through its admin endpoint
// while the create route is under load.
func (e *env) profileCreate() (*profileSummary, error) {
	secs := int(e.o.profile.Seconds())
	log.Printf("profile: %ds of create load", secs)
	cmd := e.loadgenCmd("-d", fmt.Sprintf("%ds", secs+2), "-warmup", "500ms", "-url", e.caddy.base+"/up/", "-token", e.token, "-body", createBody, "-expect", "201")
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	time.Sleep(time.Second)
	// Kept next to the results (git ignores *.prof) for `go tool pprof`.
	path := filepath.Join(filepath.Dir(e.o.out), "create.prof")
	cpu0 := cpuSeconds(e.caddy.Pid())
	t0 := time.Now()
	err := download(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", e.caddy.conf.Admin, secs), path)
	cpu := cpuSeconds(e.caddy.Pid()) - cpu0
	wall := time.Since(t0).Seconds()
	if werr := cmd.Wait(); err == nil && werr != nil {
		err = werr
	}
	if err != nil {
		return nil, err
	}
	res, err := decodeLoad(out.Bytes(), 0)
	if err != nil {
		return nil, err
	}
	return summarizeProfile(path, wall, cpu, res)
}

func download(u, path string) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// companionScenario: our /s3/params against Companion's on the same bucket.
func (e *env) companionScenario() (map[string][]loadResult, error) {
	port := freePort()
	dir, _ := filepath.Abs(e.o.companionDir)
	var err error
	e.companion, err = start("companion", dir, "node", []string{"server.js"}, []string{
		fmt.Sprintf("PORT=%d", port), "S3_ENDPOINT=" + e.s3.endpoint, "S3_BUCKET=" + bucket,
		"S3_KEY=" + e.s3.key, "S3_SECRET=" + e.s3.secret, "COMPANION_SECRET=" + randomHex(16), "NODE_ENV=production",
	})
	if err != nil {
		return nil, err
	}
	defer func() { e.companion.Stop(10 * time.Second); e.companion = nil }()
	e.compURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := e.companion.WaitReady(60*time.Second, func(ctx context.Context) error {
		return getOK(ctx, e.compURL+paramsQuery)
	}); err != nil {
		return nil, err
	}
	log.Printf("companion: %d rounds", e.o.rounds)
	vs := []variant{
		{"params", func(int) ([]string, error) {
			return []string{"-method", "GET", "-url", e.caddy.base + "/up" + paramsQuery, "-token", e.token, "-expect", "200"}, nil
		}},
		{"companion", func(int) ([]string, error) {
			return []string{"-method", "GET", "-url", e.compURL + paramsQuery, "-expect", "200"}, nil
		}},
	}
	// Companion's own CPU, for CPU per request on its side.
	return e.alternate(e.o.rounds, vs, func() float64 { return cpuSeconds(e.companion.Pid()) })
}

// bytesRun is one upload of the big file.
type bytesRun struct {
	Wall, CaddyCPU, AppCPU, S3CPU float64
	CaddyPeak, CaddyBefore        float64 // MiB
	AppPeak                       float64
}

// bytesScenario uploads the big file through the module (bytes straight to
// versitygw) and through reverse_proxy to the naive app, alternately.
func (e *env) bytesScenario() (map[string][]bytesRun, error) {
	path := filepath.Join(e.o.work, "big.bin")
	if err := writeRandomFile(path, e.o.bigSize); err != nil {
		return nil, err
	}
	defer os.Remove(path)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	c := &client.Client{Base: e.caddy.base + "/up", Auth: client.Bearer(e.token), HTTP: httpc, Concurrency: 4}
	single := &client.Client{Base: e.caddy.base + "/single", Auth: client.Bearer(e.token), HTTP: httpc}
	upload := func(c *client.Client) func(io.ReaderAt, int64) error {
		return func(body io.ReaderAt, size int64) error {
			_, err := c.Upload(context.Background(), client.File{Name: "big.bin", Type: "application/octet-stream", Size: size, Body: body})
			return err
		}
	}
	sides := []struct {
		name string
		up   func(io.ReaderAt, int64) error
	}{
		{"module", upload(c)},
		{"naive", func(body io.ReaderAt, size int64) error { return e.naiveUpload(httpc, body, size) }},
		{"module-put", upload(single)},
	}
	out := map[string][]bytesRun{}
	// One small upload each way first, so that nothing left from start-up
	// is counted against the first measured side.
	for _, s := range sides {
		if err := s.up(f, 128<<20); err != nil {
			return nil, fmt.Errorf("%s warm-up upload: %w", s.name, err)
		}
	}
	if err := e.emptyBucket(""); err != nil {
		return nil, err
	}
	log.Printf("bytes: %d rounds of %d MiB", e.o.bigRounds, e.o.bigSize>>20)
	for r := 0; r < e.o.bigRounds; r++ {
		for i := range sides {
			s := sides[(i+r)%len(sides)]
			cp, ap, sp := e.caddy.Pid(), e.naive.Pid(), e.s3.Pid()
			_, before := memStatus(cp)
			if err := resetPeakRSS(cp); err != nil {
				return nil, fmt.Errorf("resetting peak RSS: %w", err)
			}
			_ = resetPeakRSS(ap)
			c0, a0, s0 := cpuSeconds(cp), cpuSeconds(ap), cpuSeconds(sp)
			t0 := time.Now()
			if err := s.up(f, e.o.bigSize); err != nil {
				return nil, fmt.Errorf("%s upload: %w", s.name, err)
			}
			run := bytesRun{Wall: time.Since(t0).Seconds(), CaddyCPU: cpuSeconds(cp) - c0, AppCPU: cpuSeconds(ap) - a0, S3CPU: cpuSeconds(sp) - s0, CaddyBefore: before}
			run.CaddyPeak, _ = memStatus(cp)
			run.AppPeak, _ = memStatus(ap)
			log.Printf("round %d %-7s %5.1fs  caddy %.2f s CPU, peak %.0f MiB (was %.0f)  app %.2f s CPU", r+1, s.name, run.Wall, run.CaddyCPU, run.CaddyPeak, before, run.AppCPU)
			out[s.name] = append(out[s.name], run)
			if err := e.emptyBucket(""); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// naiveUpload posts the file as a multipart form with a Content-Length,
// as a browser does, streamed from disk.
func (e *env) naiveUpload(httpc *http.Client, f io.ReaderAt, size int64) error {
	var head bytes.Buffer
	mw := multipart.NewWriter(&head)
	_ = mw.WriteField("size", fmt.Sprint(size))
	if _, err := mw.CreateFormFile("file", "big.bin"); err != nil {
		return err
	}
	headLen := head.Len()
	_ = mw.Close()
	tail := append([]byte(nil), head.Bytes()[headLen:]...)
	head.Truncate(headLen)
	body := io.MultiReader(&head, io.NewSectionReader(f, 0, size), bytes.NewReader(tail))
	req, _ := http.NewRequest(http.MethodPost, e.caddy.base+"/naive/upload", body)
	req.ContentLength = int64(headLen) + size + int64(len(tail))
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("naive app: %s: %s", resp.Status, b)
	}
	return nil
}

func writeRandomFile(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, 1<<20)
	for n := int64(0); n < size; n += int64(len(buf)) {
		_, _ = rng.Read(buf)
		if _, err := w.Write(buf[:min(int64(len(buf)), size-n)]); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// emptyBucket deletes every object under prefix, so that the big runs
// don't fill the disk.
func (e *env) emptyBucket(prefix string) error {
	c := e.s3.client()
	ctx := context.Background()
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		if len(page.Contents) == 0 {
			continue
		}
		var ids []types.ObjectIdentifier
		for _, o := range page.Contents {
			ids = append(ids, types.ObjectIdentifier{Key: o.Key})
		}
		if _, err := c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(bucket), Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)}}); err != nil {
			return err
		}
	}
	return nil
}

func (e *env) countObjects(prefix string) (int, error) {
	c := e.s3.client()
	n := 0
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			return n, err
		}
		n += len(page.Contents)
	}
	return n, nil
}

// sweepResult is the sweeper scenario's outcome.
type sweepResult struct {
	Abandoned        int
	Seconds          float64 // first sweep tick to the last record expired
	ObjectsLeft      int
	During, Without  loadResult
	CreateSeconds    float64
	ExpiredConfirmed int
	// CaddyCPU and S3CPU are the CPU seconds (user+system) Caddy and
	// versitygw used from the first sweep tick to the last record expired.
	CaddyCPU, S3CPU float64
}

// jiffies are the machine's idle and total CPU time so far (/proc/stat),
// to tell how much of it other processes left to a run.
type jiffies struct{ idle, total float64 }

func machineIdle() jiffies {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return jiffies{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var j jiffies
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseFloat(f, 64)
		j.total += v
		if i == 3 || i == 4 { // idle, iowait
			j.idle += v
		}
	}
	return j
}

// since is the idle fraction of the machine from j0 to j.
func (j jiffies) since(j0 jiffies) float64 {
	return (j.idle - j0.idle) / max(j.total-j0.total, 1)
}

// sweepProfileSeconds is the length of the CPU profile of Caddy taken from
// the first sweep tick.
const sweepProfileSeconds = 3

// sweeperScenario creates abandoned uploads (each with its object, one
// byte), lets them pass their deadline, turns the sweeper on with a config
// reload and measures how long it takes to expire them all, with the
// create route under load meanwhile and then without.
func (e *env) sweeperScenario() (*sweepResult, error) {
	res := &sweepResult{Abandoned: e.o.abandoned}
	log.Printf("sweeper: creating %d abandoned uploads", e.o.abandoned)
	t0 := time.Now()
	ids, err := e.createAbandoned(e.o.abandoned)
	if err != nil {
		return nil, err
	}
	res.CreateSeconds = time.Since(t0).Seconds()
	if n, err := e.countObjects("sweep/"); err != nil || n != e.o.abandoned {
		return nil, fmt.Errorf("%d objects in the bucket before the sweep, want %d (%v)", n, e.o.abandoned, err)
	}
	time.Sleep(6 * time.Second) // past pending_ttl

	logOffset := len(e.caddy.Output())
	conf := e.caddy.conf
	conf.Sweeper = true
	if err := e.caddy.reload(conf); err != nil {
		return nil, err
	}
	tick := time.Now().Add(time.Second) // sweep_interval after the new config started
	time.Sleep(time.Until(tick))
	cpuCaddy, cpuS3, idle0 := cpuSeconds(e.caddy.Pid()), cpuSeconds(e.s3.Pid()), machineIdle()
	// Kept next to the results (git ignores *.prof): where Caddy's time
	// goes while it sweeps and serves creates.
	prof := make(chan error, 1)
	go func() {
		prof <- download(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", e.caddy.conf.Admin, sweepProfileSeconds),
			filepath.Join(filepath.Dir(e.o.out), "sweep.prof"))
	}()
	cmd := e.loadgenCmd("-d", "10m", "-warmup", "0s", "-url", e.caddy.base+"/up/", "-token", e.token, "-body", createBody, "-expect", "201")
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done, err := e.waitSwept(logOffset, e.o.abandoned, 5*time.Minute)
	res.CaddyCPU, res.S3CPU = cpuSeconds(e.caddy.Pid())-cpuCaddy, cpuSeconds(e.s3.Pid())-cpuS3
	idleDuring := machineIdle().since(idle0)
	_ = cmd.Process.Signal(syscall.SIGINT)
	_ = cmd.Wait()
	if err != nil {
		return nil, err
	}
	res.Seconds = done.Sub(tick).Seconds()
	if res.During, err = decodeLoad(out.Bytes(), 0); err != nil {
		return nil, err
	}
	log.Printf("sweeper: %d expired in %.2fs; create under sweep %.0f req/s; CPU seconds meanwhile: Caddy %.2f, versitygw %.2f; machine idle %.0f%%",
		e.o.abandoned, res.Seconds, res.During.RPS, res.CaddyCPU, res.S3CPU, 100*idleDuring)
	if err := <-prof; err != nil {
		log.Printf("sweeper: profile: %v", err)
	}
	// The same load for as long, with nothing to sweep.
	d := max(time.Duration(res.During.Seconds*float64(time.Second)), 2*time.Second)
	cpuCaddy, idle0 = cpuSeconds(e.caddy.Pid()), machineIdle()
	without, err := e.loadgenCmd("-d", d.String(), "-warmup", "0s", "-url", e.caddy.base+"/up/", "-token", e.token, "-body", createBody, "-expect", "201").Output()
	if err != nil {
		return nil, err
	}
	if res.Without, err = decodeLoad(without, 0); err != nil {
		return nil, err
	}
	log.Printf("sweeper: create without sweep %.0f req/s; CPU seconds meanwhile: Caddy %.2f; machine idle %.0f%%",
		res.Without.RPS, cpuSeconds(e.caddy.Pid())-cpuCaddy, 100*machineIdle().since(idle0))
	if res.ObjectsLeft, err = e.countObjects("sweep/"); err != nil {
		return nil, err
	}
	for _, id := range []string{ids[0], ids[len(ids)/2], ids[len(ids)-1]} {
		if st, _ := e.status("/sweep/" + id); st == "expired" {
			res.ExpiredConfirmed++
		}
	}
	conf.Sweeper = false
	return res, e.caddy.reload(conf)
}

// createAbandoned creates n uploads through the API and PUTs their one
// byte, then never completes them.
func (e *env) createAbandoned(n int) ([]string, error) {
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
	ids := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				id, err := e.createOne(httpc)
				if err != nil {
					errs <- err
					return
				}
				ids[i] = id
			}
		}()
	}
	wg.Wait()
	close(errs)
	return ids, <-errs
}

func (e *env) createOne(httpc *http.Client) (string, error) {
	req, _ := http.NewRequest(http.MethodPost, e.caddy.base+"/sweep/", strings.NewReader(`{"filename":"a.txt","size":1,"type":"text/plain"}`))
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpc.Do(req)
	if err != nil {
		return "", err
	}
	var cr struct {
		ID      string            `json:"id"`
		URL     string            `json:"url"`
		Headers map[string]string `json:"headers"`
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &cr) != nil {
		return "", fmt.Errorf("create: %s: %s", resp.Status, b)
	}
	put, _ := http.NewRequest(http.MethodPut, cr.URL, strings.NewReader("x"))
	for k, v := range cr.Headers {
		if k != "Content-Length" {
			put.Header.Set(k, v)
		}
	}
	resp, err = httpc.Do(put)
	if err != nil {
		return "", err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("put: %s", resp.Status)
	}
	return cr.ID, nil
}

func (e *env) status(path string) (string, error) {
	req, _ := http.NewRequest(http.MethodGet, e.caddy.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var rec struct {
		Status string `json:"status"`
	}
	err = json.NewDecoder(resp.Body).Decode(&rec)
	return rec.Status, err
}

// waitSwept follows Caddy's log for the sweeper's "expired abandoned
// uploads" lines until they add up to want, and returns the time of the
// last one (the log's own timestamp).
func (e *env) waitSwept(offset int, want int, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		total, last := 0, time.Time{}
		sc := bufio.NewScanner(strings.NewReader(e.caddy.Output()[offset:]))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var l struct {
				TS    float64 `json:"ts"`
				Msg   string  `json:"msg"`
				Route string  `json:"route"`
				Count int     `json:"count"`
			}
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "expired abandoned uploads" && l.Route == "sweep" {
				total += l.Count
				last = time.Unix(0, int64(l.TS*1e9))
			}
		}
		if total >= want {
			return last, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("the sweeper did not expire %d uploads within %s", want, timeout)
}
