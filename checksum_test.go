package caddyupload

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/caddyupload/caddyupload/internal/realservers"
	"github.com/caddyupload/caddyupload/storage"
)

type signedParts struct {
	Parts []struct {
		Number  int32             `json:"number"`
		URL     string            `json:"url"`
		Headers map[string]string `json:"headers"`
	} `json:"parts"`
}

func hexSum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// putCut sends a PUT that announces want bytes and sends only body, then
// closes its side: a client cut off mid-part. It returns storage's status,
// or 0 when storage closed the connection without one.
func putCut(t *testing.T, u string, headers map[string]string, want int, body []byte) int {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", pu.Host)
	if err != nil {
		t.Fatalf("storage unreachable: %v", err)
	}
	defer conn.Close()
	var req strings.Builder
	fmt.Fprintf(&req, "PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", pu.RequestURI(), pu.Host, want)
	for k, v := range headers {
		if !strings.EqualFold(k, "Content-Length") {
			fmt.Fprintf(&req, "%s: %s\r\n", k, v)
		}
	}
	req.WriteString("\r\n")
	if _, err := conn.Write(append([]byte(req.String()), body...)); err != nil {
		return 0
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Parts signed with the SHA-256 their client declared are checked by
// storage: a part with other bytes, or cut off mid-body (which versitygw
// would otherwise store padded to its signed length), never lands, and a
// route with require_checksum signs nothing without one.
func TestPartChecksums(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		s := newSite(t, srv)
		s.load(s.caddyfile("multipart_threshold 5MiB\n part_size 5MiB\n require_checksum"))
		file := make([]byte, 6<<20)
		for i := range file {
			file[i] = byte(i * 7)
		}
		parts := [][]byte{file[:5<<20], file[5<<20:]}

		// A single PUT needs its sha256 on this route; with it, it is taken.
		small := map[string]any{"filename": "a.txt", "size": 5, "type": "text/plain"}
		expectError(t, s.call("alice", "POST", "/", small, nil), 400, "invalid_request")
		small["sha256"] = hexSum([]byte("hello"))
		if resp := s.call("alice", "POST", "/", small, nil); resp.StatusCode != 201 {
			t.Fatalf("single PUT create with sha256: %d", resp.StatusCode)
		}

		c := s.create("alice", "big.bin", int64(len(file)), "application/octet-stream")
		sign := func(n int, sum string) (int, signedParts) {
			var sp signedParts
			body := map[string]any{"numbers": []int{n}}
			if sum != "" {
				body["sha256"] = []string{sum}
			}
			resp := s.call("alice", "POST", "/"+c.ID+"/parts", body, &sp)
			return resp.StatusCode, sp
		}
		expectError(t, s.call("alice", "POST", "/"+c.ID+"/parts", map[string]any{"numbers": []int{1}}, nil), 400, "invalid_request")
		expectError(t, s.call("alice", "POST", "/"+c.ID+"/parts", map[string]any{"numbers": []int{1, 2}, "sha256": []string{hexSum(parts[0])}}, nil), 400, "invalid_request")
		expectError(t, s.call("alice", "POST", "/"+c.ID+"/parts", map[string]any{"numbers": []int{1}, "sha256": []string{"xyz"}}, nil), 400, "invalid_request")

		st, sp := sign(1, hexSum(parts[0]))
		if st != 200 || len(sp.Parts) != 1 || sp.Parts[0].Headers["X-Amz-Checksum-Sha256"] == "" {
			t.Fatalf("sign part 1 with its sha256: %d %+v", st, sp)
		}
		p1 := sp.Parts[0]

		// The attacks: other bytes of the right length, and the part cut
		// off after 1 MiB.
		other := append([]byte(nil), parts[0]...)
		other[42] ^= 1
		if st := putPart(t, p1.URL, p1.Headers, other); st == 200 {
			t.Error("storage took a part whose bytes differ from the signed checksum")
		}
		if st := putCut(t, p1.URL, p1.Headers, len(parts[0]), parts[0][:1<<20]); st == 200 {
			t.Error("storage took a part cut off mid-body")
		}
		var listed struct {
			Parts []struct{ Number int32 } `json:"parts"`
		}
		if s.call("alice", "GET", "/"+c.ID+"/parts", nil, &listed); len(listed.Parts) != 0 {
			t.Fatalf("storage holds parts after both attacks: %+v", listed.Parts)
		}
		expectError(t, s.call("alice", "POST", "/"+c.ID+"/complete", nil, nil), 409, "not_uploaded")

		// Positive control: the right bytes through the same URL, and the
		// upload confirms.
		if st := putPart(t, p1.URL, p1.Headers, parts[0]); st != 200 {
			t.Fatalf("part 1: %d", st)
		}
		_, sp = sign(2, hexSum(parts[1]))
		if st := putPart(t, sp.Parts[0].URL, sp.Parts[0].Headers, parts[1]); st != 200 {
			t.Fatalf("part 2: %d", st)
		}
		var rec record
		if resp := s.call("alice", "POST", "/"+c.ID+"/complete", nil, &rec); resp.StatusCode != 200 || rec.Status != "confirmed" {
			t.Fatalf("complete: %d %+v", resp.StatusCode, rec)
		}
		if st, got := s.download("alice", c.ID); st != 200 || hexSum(got) != hexSum(file) {
			t.Errorf("download: %d, %d bytes", st, len(got))
		}
	})
}

// require_checksum cannot be met by POST policy forms: the config says so.
func TestRequireChecksumNeedsPut(t *testing.T) {
	s := newSite(t, oneServer(t))
	if err := loadCaddyfile(s.caddyfile("method post\n require_checksum")); err == nil || !strings.Contains(err.Error(), "require_checksum needs method put") {
		t.Fatalf("load: %v", err)
	}
	s.load(s.caddyfile("require_checksum"))
}

// Two completions of one multipart upload racing each other both answer
// the confirmed record: the one whose assembly comes second finds the
// upload gone from storage and lets the object check decide, instead of
// telling its client to upload a confirmed file again.
func TestConcurrentMultipartCompletes(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		s := newSite(t, srv)
		s.load(s.caddyfile("multipart_threshold 5MiB\n part_size 5MiB"))
		file := randomBytes(6 << 20)
		c := s.create("alice", "big.bin", int64(len(file)), "application/octet-stream")
		var sp signedParts
		if resp := s.call("alice", "POST", "/"+c.ID+"/parts", map[string]any{"numbers": []int{1, 2}}, &sp); resp.StatusCode != 200 {
			t.Fatalf("sign: %d", resp.StatusCode)
		}
		for i, p := range sp.Parts {
			if st := putPart(t, p.URL, p.Headers, file[i*(5<<20):min(len(file), (i+1)*(5<<20))]); st != 200 {
				t.Fatalf("part %d: %d", p.Number, st)
			}
		}

		// The first completion is held just before it assembles the parts
		// until the second one is in too.
		release := make(chan struct{})
		var once sync.Once
		hook := func(*storage.Record) { once.Do(func() { <-release }) }
		beforeAssemble.Store(&hook)
		t.Cleanup(func() { beforeAssemble.Store(nil) })
		var wg sync.WaitGroup
		answers := make([]record, 2)
		codes := make([]int, 2)
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i] = s.call("alice", "POST", "/"+c.ID+"/complete", nil, &answers[i]).StatusCode
			}()
		}
		eventually(t, "the second completion waiting", func() bool { return lockWaits.Load() == 1 })
		close(release)
		wg.Wait()
		for i := range 2 {
			if codes[i] != 200 || answers[i].Status != "confirmed" {
				t.Errorf("completion %d: %d %s", i, codes[i], answers[i].Status)
			}
		}
		if st, got := s.download("alice", c.ID); st != 200 || !bytes.Equal(got, file) {
			t.Errorf("download: %d, %d bytes", st, len(got))
		}
	})
}
