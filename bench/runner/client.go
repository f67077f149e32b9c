package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/caddyupload/caddyupload/client"
)

// clientVariants are the sides of the Go client comparison, in the order
// the report lists them.
var clientVariants = []string{"client", "client-nosum", "s3manager"}

// clientRun is one upload of the client scenario's file.
type clientRun struct {
	Wall, ClientCPU, S3CPU, CaddyCPU float64
	ClientPeak, ClientBefore         float64 // MiB, the runner's own VmHWM and VmRSS
}

func (r clientRun) mbps(size int64) float64 { return float64(size) / 1e6 / r.Wall }

// clientResult is the client scenario's outcome.
type clientResult struct {
	Size               int64
	PartSize           int64
	Concurrency, Parts int
	Runs               map[string][]clientRun
}

// clientConcurrency is the parts in flight on every side.
const clientConcurrency = 4

// clientScenario uploads one file with the Go client through the module,
// checksums on and off, and with aws-sdk-go-v2's upload manager straight
// to the bucket with the same part size and concurrency, alternately. The
// client runs in the runner's process, so the runner's CPU and peak RSS
// during an upload are the client's.
func (e *env) clientScenario() (*clientResult, error) {
	size := e.o.clientSize
	path := filepath.Join(e.o.work, "client.bin")
	if err := writeRandomFile(path, size); err != nil {
		return nil, err
	}
	defer os.Remove(path)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return nil, err
	}

	partSize, parts, err := e.routePartSize(size)
	if err != nil {
		return nil, err
	}
	res := &clientResult{Size: size, PartSize: partSize, Parts: parts, Concurrency: clientConcurrency, Runs: map[string][]clientRun{}}

	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	mk := func(off bool) *client.Client {
		return &client.Client{Base: e.caddy.base + "/up", Auth: client.Bearer(e.token), HTTP: httpc, Concurrency: clientConcurrency, DisableChecksums: off}
	}
	viaModule := func(c *client.Client) func(io.ReaderAt, int64) error {
		return func(body io.ReaderAt, n int64) error {
			_, err := c.Upload(context.Background(), client.File{Name: "client.bin", Type: "application/octet-stream", Size: n, Body: body})
			return err
		}
	}
	// The bench's S3 client: SigV4 with the versitygw root credentials,
	// checksums only where S3 requires them. Over plain HTTP the SDK
	// signs each part's SHA-256 (x-amz-content-sha256), so it reads and
	// hashes every part as the Go client with checksums does.
	// The upload manager is the baseline S3 users know; its successor,
	// transfermanager, is not what they run yet.
	//lint:ignore SA1019 the baseline is the deprecated but widely used upload manager
	up := manager.NewUploader(e.s3.client(), func(u *manager.Uploader) {
		u.PartSize = partSize
		u.Concurrency = clientConcurrency
	})
	sides := map[string]func(io.ReaderAt, int64) error{
		"client":       viaModule(mk(false)),
		"client-nosum": viaModule(mk(true)),
		"s3manager": func(body io.ReaderAt, n int64) error {
			//lint:ignore SA1019 see NewUploader above
			_, err := up.Upload(context.Background(), &s3.PutObjectInput{
				Bucket: aws.String(bucket), Key: aws.String("s3manager/client.bin"),
				Body: io.NewSectionReader(body, 0, n), ContentType: aws.String("application/octet-stream"),
			})
			return err
		},
	}
	// Warm-up, unmeasured: a few parts each way (connections, the first
	// pass through each code path), then the whole file once, so that the
	// first measured upload does not pay for versitygw's first big
	// completion or for the file's own pages still being written back.
	warm := min(size, 3*partSize)
	for _, name := range clientVariants {
		if err := sides[name](f, warm); err != nil {
			return nil, fmt.Errorf("%s warm-up upload: %w", name, err)
		}
	}
	if err := sides["client-nosum"](f, size); err != nil {
		return nil, fmt.Errorf("warm-up upload: %w", err)
	}
	if err := e.emptyBucket(""); err != nil {
		return nil, err
	}
	log.Printf("client: %d rounds of %d MiB, %d MiB parts, %d at a time", e.o.clientRounds, size>>20, partSize>>20, clientConcurrency)
	self := os.Getpid()
	for r := 0; r < e.o.clientRounds; r++ {
		for i := range clientVariants {
			name := clientVariants[(i+r)%len(clientVariants)]
			runtime.GC()
			_, before := memStatus(self)
			if err := resetPeakRSS(self); err != nil {
				return nil, fmt.Errorf("resetting peak RSS: %w", err)
			}
			sp, cp := e.s3.Pid(), e.caddy.Pid()
			c0, s0, k0 := cpuSeconds(self), cpuSeconds(sp), cpuSeconds(cp)
			t0 := time.Now()
			if err := sides[name](f, size); err != nil {
				return nil, fmt.Errorf("%s upload: %w", name, err)
			}
			run := clientRun{Wall: time.Since(t0).Seconds(), ClientCPU: cpuSeconds(self) - c0, S3CPU: cpuSeconds(sp) - s0, CaddyCPU: cpuSeconds(cp) - k0, ClientBefore: before}
			run.ClientPeak, _ = memStatus(self)
			log.Printf("round %d %-12s %5.2fs %6.0f MB/s  client %.2f s CPU, peak %.0f MiB (was %.0f)  versitygw %.2f s CPU",
				r+1, name, run.Wall, run.mbps(size), run.ClientCPU, run.ClientPeak, before, run.S3CPU)
			res.Runs[name] = append(res.Runs[name], run)
			if err := e.emptyBucket(""); err != nil {
				return nil, err
			}
		}
	}
	return res, nil
}

// routePartSize asks the /up route how it would cut a file of size bytes
// (create, then delete), so that the upload manager uses the same parts.
func (e *env) routePartSize(size int64) (int64, int, error) {
	body := fmt.Sprintf(`{"filename":"probe.bin","size":%d,"type":"application/octet-stream"}`, size)
	req, _ := http.NewRequest(http.MethodPost, e.caddy.base+"/up/", bytes.NewReader([]byte(body)))
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var cr struct {
		ID        string `json:"id"`
		Multipart *struct {
			PartSize  int64 `json:"part_size"`
			PartCount int   `json:"part_count"`
		} `json:"multipart"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &cr) != nil || cr.Multipart == nil {
		return 0, 0, fmt.Errorf("probe create of %d bytes: %s: %s (want a multipart upload)", size, resp.Status, b)
	}
	del, _ := http.NewRequest(http.MethodDelete, e.caddy.base+"/up/"+cr.ID, nil)
	del.Header.Set("Authorization", "Bearer "+e.token)
	if resp, err := http.DefaultClient.Do(del); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return cr.Multipart.PartSize, cr.Multipart.PartCount, nil
}

// clientRatio is the median over rounds of a's throughput over b's, each
// round's pair measured back to back.
func clientRatio(a, b []clientRun) float64 {
	var xs []float64
	for i := range min(len(a), len(b)) {
		if a[i].Wall > 0 {
			xs = append(xs, b[i].Wall/a[i].Wall)
		}
	}
	return median(xs)
}

func clientMedian(rs []clientRun, g func(clientRun) float64) float64 {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = g(r)
	}
	return median(xs)
}

var clientLabels = map[string]string{
	"client":       "Go client via the module, part checksums on (a)",
	"client-nosum": "Go client via the module, checksums off (b)",
	"s3manager":    "aws-sdk-go-v2 `manager.Uploader` straight to the bucket (c)",
}

// markdown is the scenario's section of the results.
func (c *clientResult) markdown(loadBefore, loadAfter string) string {
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("## Go client vs aws-sdk-go-v2's upload manager\n\n")
	p("%d MiB of random bytes from a temp file, %d parts of %d MiB, %d in flight, to versitygw on loopback; %d alternating rounds, the first side rotating. ",
		c.Size>>20, c.Parts, c.PartSize>>20, c.Concurrency, len(c.Runs["client"]))
	p("(a) and (b): `client.Client.Upload` through the bench's `/up` route (create, a signature per part, complete; bytes straight to versitygw). ")
	p("(c): `feature/s3/manager` v1.23.24 `Uploader` with the same part size and concurrency, with versitygw's root credentials and the bench's S3 client ")
	p("(checksums only when required; over plain HTTP the SDK signs each part's SHA-256, so it hashes every part as (a) does). ")
	p("All three share one process with the runner, whose CPU and peak RSS (VmHWM, reset before each upload) are the client's. Load average before: %s; after: %s.\n\n", loadBefore, loadAfter)
	p("| side | wall s | MB/s | client CPU s | Caddy CPU s | versitygw CPU s | all three, CPU s | client peak RSS MiB (before) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, name := range clientVariants {
		rs := c.Runs[name]
		med := func(g func(clientRun) float64) float64 { return clientMedian(rs, g) }
		wall := med(func(r clientRun) float64 { return r.Wall })
		p("| %s | %.2f | %.0f | %.2f | %.2f | %.2f | %.2f | %.0f (%.0f) |\n", clientLabels[name], wall, float64(c.Size)/1e6/max(wall, 1e-9),
			med(func(r clientRun) float64 { return r.ClientCPU }), med(func(r clientRun) float64 { return r.CaddyCPU }),
			med(func(r clientRun) float64 { return r.S3CPU }), med(func(r clientRun) float64 { return r.ClientCPU + r.CaddyCPU + r.S3CPU }),
			med(func(r clientRun) float64 { return r.ClientPeak }), med(func(r clientRun) float64 { return r.ClientBefore }))
	}
	p("\nThroughput ratios (median of per-round ratios): **a/c %.2f×** (target ≥ 0.8×), **a/b %.2f×** (checksums cost %.0f%%; target ≤ 10%%).\n\n",
		clientRatio(c.Runs["client"], c.Runs["s3manager"]), clientRatio(c.Runs["client"], c.Runs["client-nosum"]),
		100*(1-clientRatio(c.Runs["client"], c.Runs["client-nosum"])))
	p("Per round (MB/s):\n\n| round |")
	for _, name := range clientVariants {
		p(" %s |", name)
	}
	p("\n|---|" + "---:|---:|---:|\n")
	for i := range len(c.Runs["client"]) {
		p("| %d |", i+1)
		for _, name := range clientVariants {
			if i < len(c.Runs[name]) {
				p(" %.0f |", c.Runs[name][i].mbps(c.Size))
			} else {
				p(" |")
			}
		}
		p("\n")
	}
	p("\n")
	return b.String()
}

// summaryRows are the scenario's rows of the summary table.
func (c *clientResult) summaryRows() string {
	a, bb, s := c.Runs["client"], c.Runs["client-nosum"], c.Runs["s3manager"]
	mb := func(rs []clientRun) float64 {
		return float64(c.Size) / 1e6 / max(clientMedian(rs, func(r clientRun) float64 { return r.Wall }), 1e-9)
	}
	return fmt.Sprintf("| Go client, %d MiB upload: vs aws-sdk-go-v2 upload manager | %.0f MB/s (part checksums on) | `manager.Uploader`: %.0f MB/s | %.2f× | ≥ 0.8× |\n", c.Size>>20, mb(a), mb(s), clientRatio(a, s)) +
		fmt.Sprintf("| Go client, %d MiB upload: part checksums on vs off | %.0f MB/s | %.0f MB/s | %.2f× | ≥ 0.9× |\n", c.Size>>20, mb(a), mb(bb), clientRatio(a, bb))
}
