// Command loadgen is a closed-loop HTTP/1.1 load generator: N keep-alive
// connections, each sending its next request as soon as the previous answer
// is read, for a fixed duration. It writes pre-built requests straight to
// the socket and reads answers with http.ReadResponse, so that the client
// costs as little CPU as possible on a machine it shares with the server.
//
//	loadgen -url http://127.0.0.1:8080/up/ -c 32 -d 10s -token $JWT -body '{"filename":...}'
//	loadgen -url http://127.0.0.1:8080/up/ -parts ...   # create one upload per connection, then sign parts
//
// It prints one JSON object: requests, errors, req/s, p50 and p99.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type config struct {
	target   *url.URL
	method   string
	body     string
	token    string
	tokens   []string // one per request, in order; the run ends when they run out
	parts    bool
	expect   int
	conns    int
	duration time.Duration
	warmup   time.Duration
}

// Result is what one run reports.
type Result struct {
	Requests int64          `json:"requests"`
	Total    int64          `json:"total"` // warm-up included
	Errors   int64          `json:"errors"`
	Seconds  float64        `json:"seconds"`
	RPS      float64        `json:"rps"`
	P50ms    float64        `json:"p50_ms"`
	P99ms    float64        `json:"p99_ms"`
	Statuses map[string]int `json:"statuses"`
	Error    string         `json:"first_error,omitempty"`
}

func main() {
	var (
		cfg        config
		rawURL     string
		tokensFile string
	)
	flag.StringVar(&rawURL, "url", "", "target URL (http only)")
	flag.StringVar(&cfg.method, "method", "POST", "request method")
	flag.StringVar(&cfg.body, "body", "", "request body (sent as application/json)")
	flag.StringVar(&cfg.token, "token", "", "bearer token for every request")
	flag.StringVar(&tokensFile, "tokens", "", "file of bearer tokens, one per line: each request uses the next one")
	flag.BoolVar(&cfg.parts, "parts", false, "per connection, create an upload with -body at -url, then sign parts of it: POST {url}{id}/parts")
	flag.IntVar(&cfg.expect, "expect", 0, "the status every answer must have (default: any 2xx)")
	flag.IntVar(&cfg.conns, "c", 32, "connections")
	flag.DurationVar(&cfg.duration, "d", 10*time.Second, "measured duration (SIGINT or SIGTERM ends it early)")
	flag.DurationVar(&cfg.warmup, "warmup", time.Second, "unmeasured load before the measured duration")
	flag.Parse()
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		fatalf("-url must be an http:// URL")
	}
	cfg.target = u
	if tokensFile != "" {
		b, err := os.ReadFile(tokensFile)
		if err != nil {
			fatalf("%v", err)
		}
		cfg.tokens = strings.Fields(string(b))
	}
	res, err := run(cfg)
	if err != nil {
		fatalf("%v", err)
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
	os.Exit(1)
}

// worker is one connection and the latencies it measured.
type worker struct {
	cfg      *config
	conn     net.Conn
	br       *bufio.Reader
	req      []byte // the pre-built request, when it never changes
	path     string
	lat      []time.Duration
	errors   int64
	statuses map[int]int
	firstErr error
}

func run(cfg config) (*Result, error) {
	var next atomic.Int64 // index into cfg.tokens
	var total atomic.Int64
	workers := make([]*worker, cfg.conns)
	for i := range workers {
		w := &worker{cfg: &cfg, path: cfg.target.RequestURI(), statuses: map[int]int{}}
		if err := w.dial(); err != nil {
			return nil, err
		}
		defer w.conn.Close()
		if cfg.parts {
			if err := w.createUpload(); err != nil {
				return nil, fmt.Errorf("creating the upload to sign parts of: %w", err)
			}
		}
		if cfg.tokens == nil && !cfg.parts {
			w.req = w.build(cfg.token, w.body(0))
		}
		workers[i] = w
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	var measuring, done atomic.Bool
	// One-shot tokens are all measured: there is nothing to warm up.
	measuring.Store(cfg.tokens != nil)
	var wg sync.WaitGroup
	start := time.Now()
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 1; !done.Load(); n++ {
				req := w.req
				if req == nil {
					tok := cfg.token
					if cfg.tokens != nil {
						i := next.Add(1) - 1
						if i >= int64(len(cfg.tokens)) {
							done.Store(true)
							return
						}
						tok = cfg.tokens[i]
					}
					req = w.build(tok, w.body(n))
				}
				t0 := time.Now()
				status, err := w.do(req)
				total.Add(1)
				if !measuring.Load() {
					if err != nil {
						w.redial()
					}
					continue
				}
				w.lat = append(w.lat, time.Since(t0))
				if err != nil {
					w.fail(err)
					w.redial()
					continue
				}
				w.statuses[status]++
				if (cfg.expect != 0 && status != cfg.expect) || (cfg.expect == 0 && status/100 != 2) {
					w.fail(fmt.Errorf("status %d", status))
				}
			}
		}()
	}
	if cfg.tokens == nil {
		select {
		case <-time.After(cfg.warmup):
		case <-stop:
		}
		start = time.Now()
		measuring.Store(true)
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-time.After(cfg.duration):
	case <-stop:
	case <-finished: // the tokens ran out
	}
	done.Store(true)
	elapsed := time.Since(start)
	wg.Wait()

	res := &Result{Seconds: elapsed.Seconds(), Statuses: map[string]int{}}
	var all []time.Duration
	for _, w := range workers {
		all = append(all, w.lat...)
		res.Errors += w.errors
		for s, n := range w.statuses {
			res.Statuses[strconv.Itoa(s)] += n
		}
		if w.firstErr != nil && res.Error == "" {
			res.Error = w.firstErr.Error()
		}
	}
	slices.Sort(all)
	res.Requests = int64(len(all))
	res.Total = total.Load()
	res.RPS = float64(len(all)) / elapsed.Seconds()
	res.P50ms = quantile(all, 0.50)
	res.P99ms = quantile(all, 0.99)
	return res, nil
}

func quantile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return float64(sorted[i]) / float64(time.Millisecond)
}

func (w *worker) fail(err error) {
	w.errors++
	if w.firstErr == nil {
		w.firstErr = err
	}
}

func (w *worker) dial() error {
	c, err := net.Dial("tcp", w.cfg.target.Host)
	if err != nil {
		return err
	}
	w.conn, w.br = c, bufio.NewReaderSize(c, 16<<10)
	return nil
}

func (w *worker) redial() {
	_ = w.conn.Close()
	for w.dial() != nil {
		time.Sleep(10 * time.Millisecond)
	}
}

// body is the n-th request's body: in parts mode a different part number
// each time, as a multipart upload's client asks.
func (w *worker) body(n int) string {
	if w.cfg.parts {
		return `{"numbers":[` + strconv.Itoa(n%64+1) + `]}`
	}
	return w.cfg.body
}

func (w *worker) build(token, body string) []byte {
	var b bytes.Buffer
	b.WriteString(w.cfg.method + " " + w.path + " HTTP/1.1\r\nHost: " + w.cfg.target.Host + "\r\nUser-Agent: loadgen\r\n")
	if token != "" {
		b.WriteString("Authorization: Bearer " + token + "\r\n")
	}
	if body != "" || w.cfg.method == "POST" {
		b.WriteString("Content-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n")
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.Bytes()
}

// do sends one request and reads the whole answer.
func (w *worker) do(req []byte) (int, error) {
	if _, err := w.conn.Write(req); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(w.br, nil)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.Close {
		err = errors.New("server closed the connection")
	}
	return resp.StatusCode, err
}

// createUpload creates the multipart upload this connection signs parts
// of, and points the worker at its parts path.
func (w *worker) createUpload() error {
	tok := w.cfg.token
	if len(w.cfg.tokens) > 0 {
		tok = w.cfg.tokens[0]
	}
	saved := w.cfg.parts
	w.cfg.parts = false
	req := w.build(tok, w.cfg.body)
	w.cfg.parts = saved
	if _, err := w.conn.Write(req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(w.br, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out struct {
		ID        string `json:"id"`
		Multipart *struct {
			PartCount int `json:"part_count"`
		} `json:"multipart"`
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &out); err != nil || out.ID == "" || out.Multipart == nil || out.Multipart.PartCount < 64 {
		return fmt.Errorf("not a multipart upload of 64 parts or more: %s", b)
	}
	w.path = strings.TrimSuffix(w.cfg.target.RequestURI(), "/") + "/" + out.ID + "/parts"
	return nil
}
