package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// formParams is the answer of GET /s3/params: a POST policy form.
type formParams struct {
	Method string            `json:"method"`
	URL    string            `json:"url"`
	Fields map[string]string `json:"fields"`
	Key    string            `json:"key"`
	ID     string            `json:"id"`
}

func (s *site) formParams(t *testing.T, filename, typ string) formParams {
	t.Helper()
	q := url.Values{"filename": {filename}, "type": {typ}}
	status, body := s.api(t, http.MethodGet, "/s3/params?"+q.Encode(), nil)
	if status != http.StatusOK {
		t.Fatalf("s3/params: %d %s", status, body)
	}
	var p formParams
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Method != http.MethodPost || p.Fields["policy"] == "" {
		t.Fatalf("s3/params: %+v, want a POST policy form", p)
	}
	return p
}

// postForm sends the fields (sorted, as any order is valid) and then the
// file, as a browser's FormData does.
func postForm(t *testing.T, target string, fields map[string]string, content string) (int, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		_ = mw.WriteField(k, fields[k])
	}
	fw, _ := mw.CreateFormFile("file", "form.txt")
	_, _ = io.WriteString(fw, content)
	_ = mw.Close()
	resp, err := http.Post(target, mw.FormDataContentType(), &b)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// filler is an endless run of one byte.
type filler byte

func (f filler) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(f)
	}
	return len(p), nil
}

// bigFieldForm is what an attacker sends: no credentials, one form field
// of size bytes before the file, and an honest Content-Length.
func bigFieldForm(size int64) (io.Reader, int64, string) {
	const boundary = "attackboundary0123456789"
	head := "--" + boundary + "\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nx.txt\r\n" +
		"--" + boundary + "\r\nContent-Disposition: form-data; name=\"policy\"\r\n\r\n"
	tail := "\r\n--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.txt\"\r\n\r\nx\r\n--" + boundary + "--\r\n"
	body := io.MultiReader(strings.NewReader(head), io.LimitReader(filler('A'), size), strings.NewReader(tail))
	return body, int64(len(head)) + size + int64(len(tail)), "multipart/form-data; boundary=" + boundary
}

// peakRSS is the process's peak resident set size so far (VmHWM).
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM for pid %d", pid)
	return 0
}

// attack sends n requests at once and tallies how they ended; none may
// succeed or hang.
func attack(t *testing.T, n int, newRequest func() *http.Request) map[string]int {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Minute}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		outcomes = map[string]int{}
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outcome := "refused"
			resp, err := client.Do(newRequest())
			switch {
			case err != nil && strings.Contains(err.Error(), "Client.Timeout"):
				outcome = "timeout"
			case err != nil:
				// The server answered and closed before the body was
				// sent: refused, as it should be.
			default:
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				outcome = strconv.Itoa(resp.StatusCode)
			}
			mu.Lock()
			outcomes[outcome]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	for outcome := range outcomes {
		if outcome == "timeout" || outcome < "400" {
			t.Errorf("attack request: %s", outcome)
		}
	}
	return outcomes
}

// TestUnauthenticatedBodiesCannotExhaustMemory sends, without credentials,
// what made the storage server buffer request bodies in memory before any
// signature check: 20 parallel form POSTs with a 30 MB field each, or 20
// parallel presigned-looking PUTs (a forged signature) with a multipart
// body of the same size. Neither Caddy nor the storage server may grow by
// more than maxGrowth, and real form and PUT uploads work before and after.
func TestUnauthenticatedBodiesCannotExhaustMemory(t *testing.T) {
	t.Parallel()
	const (
		parallel  = 20
		fieldSize = 30 << 20
		maxGrowth = 48 << 20
	)
	for _, kind := range []string{"unsigned form POSTs", "forged presigned PUTs with a multipart body"} {
		t.Run(kind, func(t *testing.T) {
			// A site of its own: peak RSS only ever grows.
			s := newSite(t)
			s.start(t)
			formUpload := func(content string) {
				t.Helper()
				p := s.formParams(t, "form.txt", "text/plain")
				if status, body := postForm(t, p.URL, p.Fields, content); status != http.StatusNoContent && status != http.StatusCreated {
					t.Fatalf("form upload: %d %s", status, body)
				}
				stored, err := os.ReadFile(filepath.Join(s.Dir, "s3", "caddyupload", filepath.FromSlash(p.Key)))
				if err != nil || string(stored) != content {
					t.Fatalf("object on disk: %q, %v", stored, err)
				}
			}
			formUpload("posted before the attack\n")
			s.upload(t, "put before the attack\n")

			method, target := http.MethodPost, s.base()+"/caddyupload"
			if kind != "unsigned form POSTs" {
				// A presigned URL the attacker holds, the signature forged.
				u, err := url.Parse(s.create(t, "a.txt", 1, "text/plain").URL)
				if err != nil {
					t.Fatal(err)
				}
				q := u.Query()
				q.Set("X-Amz-Signature", strings.Repeat("0", 64))
				u.RawQuery = q.Encode()
				method, target = http.MethodPut, u.String()
			}

			caddyPID, childPID := s.proc.Pid(), s.serverPID(t)
			caddyBefore, childBefore := peakRSS(t, caddyPID), peakRSS(t, childPID)
			outcomes := attack(t, parallel, func() *http.Request {
				body, n, typ := bigFieldForm(fieldSize)
				req, _ := http.NewRequest(method, target, body)
				req.ContentLength = n
				req.Header.Set("Content-Type", typ)
				return req
			})
			caddyGrowth := peakRSS(t, caddyPID) - caddyBefore
			childGrowth := peakRSS(t, childPID) - childBefore
			t.Logf("%d %s (%d MiB field): outcomes %v; peak RSS growth: caddy %d MiB (from %d MiB), storage server %d MiB (from %d MiB)",
				parallel, kind, fieldSize>>20, outcomes, caddyGrowth>>20, caddyBefore>>20, childGrowth>>20, childBefore>>20)
			if caddyGrowth > maxGrowth {
				t.Errorf("caddy's peak RSS grew by %d MiB, want under %d MiB", caddyGrowth>>20, maxGrowth>>20)
			}
			if childGrowth > maxGrowth {
				t.Errorf("the storage server's peak RSS grew by %d MiB, want under %d MiB", childGrowth>>20, maxGrowth>>20)
			}

			formUpload("posted after the attack\n")
			s.upload(t, "put after the attack\n")
		})
	}
}
