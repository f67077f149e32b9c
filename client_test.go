package caddyupload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/caddyupload/caddyupload/client"
	"github.com/caddyupload/caddyupload/internal/realservers"
)

// TestGoClient uploads through the route with the project's Go client:
// single PUT, POST policy and parallel multipart.
func TestGoClient(t *testing.T) {
	for _, policy := range []string{
		"max_size 64MiB\n multipart_threshold 6MiB\n part_size 5MiB",
		"method post\n max_size 64MiB\n multipart_threshold 6MiB\n part_size 5MiB",
	} {
		s := newSite(t, oneServer(t))
		s.load(s.caddyfile(policy))
		c := &client.Client{Base: s.base + "/up", Auth: client.Basic("alice", testUsers["alice"]), Concurrency: 3, MultipartThreshold: 6 << 20}
		var progress int64
		c.Progress = func(sent, total int64) { progress = sent }
		for _, size := range []int{1, 70_000, 16<<20 + 7} {
			body := randomBytes(size)
			rec, err := c.Upload(context.Background(), client.File{Name: "f.bin", Type: "application/octet-stream", Size: int64(size), Body: bytes.NewReader(body)})
			if err != nil {
				t.Fatalf("%s, %d bytes: %v", policy, size, err)
			}
			if rec.Status != "confirmed" || rec.Size != int64(size) {
				t.Fatalf("record %+v", rec)
			}
			// Only a single PUT carries the file's checksum; a POST form
			// route refuses one, and the client creates without it.
			want := ""
			if size < 6<<20 && policy[:6] != "method" {
				want = hexSum(body)
			}
			if rec.SHA256 != want {
				t.Errorf("%s, %d bytes: record sha256 %q, want %q", policy, size, rec.SHA256, want)
			}
			resp := s.call("alice", "GET", "/"+rec.ID+"/download", nil, nil)
			got := do(t, http.DefaultClient, mustRequest(t, "GET", resp.Header.Get("Location")))
			if !bytes.Equal(got.body, body) {
				t.Fatalf("%d bytes: the stored object differs", size)
			}
		}
		if progress != 16<<20+7 {
			t.Errorf("progress ended at %d", progress)
		}
		// An error answer surfaces the API's code.
		_, err := c.Upload(context.Background(), client.File{Name: "x.bin", Type: "application/octet-stream", Size: 65 << 20, Body: bytes.NewReader(nil)})
		if ae, ok := err.(*client.Error); !ok || ae.Code != "too_large" {
			t.Errorf("oversize upload: %v", err)
		}
	}
}

// storagePuts records the checksum header of every PUT the client sends to
// storage, by part number (0 for a single PUT).
type storagePuts struct {
	mu   sync.Mutex
	sums map[string]string
}

func (p *storagePuts) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPut {
		p.mu.Lock()
		p.sums[r.URL.Query().Get("partNumber")] = r.Header.Get("X-Amz-Checksum-Sha256")
		p.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(r)
}

// changingFile serves data, except that every read of byte 0 after the
// first sees it flipped: a file that changes between being hashed and
// being sent.
type changingFile struct {
	data   []byte
	mu     sync.Mutex
	reads0 int
}

func (f *changingFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := bytes.NewReader(f.data).ReadAt(p, off)
	if off == 0 && n > 0 {
		f.mu.Lock()
		f.reads0++
		if f.reads0 > 1 {
			p[0] ^= 1
		}
		f.mu.Unlock()
	}
	return n, err
}

func b64Sum(b []byte) string { s := sha256.Sum256(b); return base64.StdEncoding.EncodeToString(s[:]) }

// The Go client declares the SHA-256 of each part (and of a single PUT's
// file), storage checks them, and the upload confirms with the right bytes;
// a file that changes after it was hashed is refused by storage.
func TestGoClientChecksums(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		s := newSite(t, srv)
		s.load(s.caddyfile("max_size 64MiB\n multipart_threshold 6MiB\n part_size 5MiB"))
		puts := &storagePuts{sums: map[string]string{}}
		c := &client.Client{Base: s.base + "/up", Auth: client.Basic("alice", testUsers["alice"]), Concurrency: 2,
			MultipartThreshold: 6 << 20, HTTP: &http.Client{Transport: puts}}

		body := randomBytes(12<<20 + 5)
		rec, err := c.Upload(context.Background(), client.File{Name: "big.bin", Type: "application/octet-stream", Size: int64(len(body)), Body: bytes.NewReader(body)})
		if err != nil {
			t.Fatal(err)
		}
		if rec.Status != "confirmed" || rec.Size != int64(len(body)) || rec.Filename != "big.bin" || rec.SHA256 != "" {
			t.Fatalf("record %+v", rec)
		}
		if st, got := s.download("alice", rec.ID); st != 200 || !bytes.Equal(got, body) {
			t.Fatalf("download: %d, %d bytes", st, len(got))
		}
		want := map[string]string{"1": b64Sum(body[:5<<20]), "2": b64Sum(body[5<<20 : 10<<20]), "3": b64Sum(body[10<<20:])}
		if len(puts.sums) != 3 || puts.sums["1"] != want["1"] || puts.sums["2"] != want["2"] || puts.sums["3"] != want["3"] {
			t.Fatalf("part checksums sent %v, want %v", puts.sums, want)
		}

		// The same from an *os.File, whose parts go out with sendfile
		// through descriptors of each sender's own on Linux.
		path := filepath.Join(t.TempDir(), "big.bin")
		if err := os.WriteFile(path, body, 0o600); err != nil {
			t.Fatal(err)
		}
		file, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		clear(puts.sums)
		rec, err = c.Upload(context.Background(), client.File{Name: "big.bin", Type: "application/octet-stream", Size: int64(len(body)), Body: file})
		if err != nil || rec.Status != "confirmed" {
			t.Fatalf("upload from a file: %v", err)
		}
		if st, got := s.download("alice", rec.ID); st != 200 || !bytes.Equal(got, body) {
			t.Fatalf("download of the upload from a file: %d, %d bytes", st, len(got))
		}
		if len(puts.sums) != 3 || puts.sums["1"] != want["1"] || puts.sums["2"] != want["2"] || puts.sums["3"] != want["3"] {
			t.Fatalf("part checksums sent from a file %v, want %v", puts.sums, want)
		}

		// A file that changes between hashing and sending: storage refuses
		// it (the checksum is signed), single PUT and multipart alike. The
		// same upload of a steady file is the positive control above and
		// below.
		for _, size := range []int{70_000, 12 << 20} {
			_, err := c.Upload(context.Background(), client.File{Name: "moving.bin", Type: "application/octet-stream", Size: int64(size), Body: &changingFile{data: randomBytes(size)}})
			var ae *client.Error
			if err == nil || errors.As(err, &ae) || !strings.Contains(err.Error(), "400 Bad Request") {
				t.Errorf("%d bytes changed after hashing: %v, want storage's 400", size, err)
			}
			steady := randomBytes(size)
			rec, err := c.Upload(context.Background(), client.File{Name: "steady.bin", Type: "application/octet-stream", Size: int64(size), Body: bytes.NewReader(steady)})
			if err != nil || rec.Status != "confirmed" {
				t.Fatalf("%d bytes, steady: %v", size, err)
			}
			if size < 6<<20 && rec.SHA256 != hexSum(steady) {
				t.Errorf("single PUT record sha256 %q, want %q", rec.SHA256, hexSum(steady))
			}
		}
	})
}

// A route with require_checksum takes the Go client's uploads, single and
// multipart, and refuses them with checksums turned off.
func TestGoClientRequireChecksum(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		s := newSite(t, srv)
		s.load(s.caddyfile("max_size 64MiB\n multipart_threshold 6MiB\n part_size 5MiB\n require_checksum"))
		auth := client.Basic("alice", testUsers["alice"])
		c := &client.Client{Base: s.base + "/up", Auth: auth, Concurrency: 2, MultipartThreshold: 6 << 20}
		// A client that believes the default threshold declares the
		// 12 MiB file's checksum at create, is refused, and creates the
		// multipart upload without it.
		other := &client.Client{Base: s.base + "/up", Auth: auth, Concurrency: 2}
		off := &client.Client{Base: s.base + "/up", Auth: auth, Concurrency: 2, MultipartThreshold: 6 << 20, DisableChecksums: true}
		for _, size := range []int{70_000, 12<<20 + 5} {
			body := randomBytes(size)
			f := client.File{Name: "f.bin", Type: "application/octet-stream", Size: int64(size), Body: bytes.NewReader(body)}
			_, err := off.Upload(context.Background(), f)
			var ae *client.Error
			if !errors.As(err, &ae) || ae.Status != 400 || ae.Code != "invalid_request" {
				t.Errorf("%d bytes without checksums: %v, want 400 invalid_request", size, err)
			}
			for _, cl := range []*client.Client{c, other} {
				rec, err := cl.Upload(context.Background(), f)
				if err != nil {
					t.Fatalf("%d bytes: %v", size, err)
				}
				if rec.Status != "confirmed" || rec.Size != int64(size) {
					t.Fatalf("record %+v", rec)
				}
				if st, got := s.download("alice", rec.ID); st != 200 || !bytes.Equal(got, body) {
					t.Fatalf("%d bytes: download %d, %d bytes", size, st, len(got))
				}
			}
		}
	})
}
