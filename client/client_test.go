package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testRoute is the route's API and a storage server in one: it keeps every
// part it is sent, with its checksum header, and can refuse chosen
// attempts of a part, answering before it reads the body.
type testRoute struct {
	t        *testing.T
	partSize int64
	api      *httptest.Server
	store    *httptest.Server

	mu       sync.Mutex
	parts    map[int][]byte
	sums     map[int]string
	attempts map[int]int
	refuse   func(part, attempt int) bool // answer 500 without reading
	hold     time.Duration                // after such an answer, before closing
	ttl      time.Duration                // of signatures; default a minute
	signs    map[int]int                  // signatures made of each part
	calls    int                          // sign calls
}

func newTestRoute(t *testing.T, partSize int64) *testRoute {
	r := &testRoute{t: t, partSize: partSize, parts: map[int][]byte{}, sums: map[int]string{}, attempts: map[int]int{}, signs: map[int]int{}, ttl: time.Minute}
	r.store = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		n, _ := strconv.Atoi(req.URL.Query().Get("partNumber"))
		r.mu.Lock()
		r.attempts[n]++
		attempt := r.attempts[n]
		r.mu.Unlock()
		if r.refuse != nil && r.refuse(n, attempt) {
			http.Error(w, "try again", http.StatusInternalServerError)
			w.(http.Flusher).Flush()
			time.Sleep(r.hold)
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil || int64(len(body)) != req.ContentLength {
			http.Error(w, "short body", http.StatusBadRequest)
			return
		}
		if want := req.Header.Get("X-Amz-Checksum-Sha256"); want != "" && want != b64Sum(body) {
			http.Error(w, "BadDigest", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.parts[n] = body
		r.sums[n] = req.Header.Get("X-Amz-Checksum-Sha256")
		r.mu.Unlock()
		w.Header().Set("ETag", fmt.Sprintf(`"etag-%d"`, n))
	}))
	t.Cleanup(r.store.Close)
	r.api = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case req.URL.Path == "/":
			var in struct{ Size int64 }
			_ = json.NewDecoder(req.Body).Decode(&in)
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"id":"u","multipart":{"part_size":%d,"part_count":%d}}`, partSize, (in.Size+partSize-1)/partSize)
		case strings.HasSuffix(req.URL.Path, "/parts"):
			var in struct {
				Numbers []int32
				SHA256  []string
			}
			_ = json.NewDecoder(req.Body).Decode(&in)
			if in.SHA256 != nil && len(in.SHA256) != len(in.Numbers) {
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprint(w, `{"error":{"code":"invalid_request","message":"sha256 must list one checksum for each part number"}}`)
				return
			}
			type signed struct {
				Number  int32             `json:"number"`
				URL     string            `json:"url"`
				Headers map[string]string `json:"headers"`
			}
			var out struct {
				Parts     []signed  `json:"parts"`
				ExpiresAt time.Time `json:"expires_at"`
			}
			r.mu.Lock()
			r.calls++
			for i, n := range in.Numbers {
				r.signs[int(n)]++
				headers := map[string]string{}
				if in.SHA256 != nil {
					raw, _ := hexDecode(in.SHA256[i])
					headers["x-amz-checksum-sha256"] = base64.StdEncoding.EncodeToString(raw)
				}
				out.Parts = append(out.Parts, signed{n, fmt.Sprintf("%s/o?partNumber=%d", r.store.URL, n), headers})
			}
			out.ExpiresAt = time.Now().Add(r.ttl)
			r.mu.Unlock()
			_ = json.NewEncoder(w).Encode(out)
		case strings.HasSuffix(req.URL.Path, "/complete"):
			var in completion
			_ = json.NewDecoder(req.Body).Decode(&in)
			for i, p := range in.Parts {
				if p.Number != int32(i+1) || p.ETag != fmt.Sprintf("etag-%d", i+1) {
					http.Error(w, `{"error":{"code":"invalid_request","message":"parts"}}`, http.StatusBadRequest)
					return
				}
			}
			fmt.Fprint(w, `{"id":"u","status":"confirmed"}`)
		case req.Method == http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, req)
		}
	}))
	t.Cleanup(r.api.Close)
	return r
}

func hexDecode(s string) ([]byte, error) {
	out := make([]byte, len(s)/2)
	_, err := fmt.Sscanf(s, "%x", &out)
	return out, err
}

func b64Sum(b []byte) string { s := sha256.Sum256(b); return base64.StdEncoding.EncodeToString(s[:]) }

// stored is what storage holds, the parts in order.
func (r *testRoute) stored() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b []byte
	for n := 1; n <= len(r.parts); n++ {
		b = append(b, r.parts[n]...)
	}
	return b
}

func tempFile(t *testing.T, data []byte) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f.bin")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func randomData(n int) []byte {
	b := make([]byte, n)
	rng := rand.NewChaCha8([32]byte{byte(n)})
	_, _ = rng.Read(b)
	return b
}

// A multipart upload from a file (sent with sendfile on Linux) and from
// memory stores exactly the file, with each part's checksum declared, or
// none when checksums are off.
func TestMultipartSources(t *testing.T) {
	const partSize = 1 << 20
	data := randomData(5*partSize + 12345)
	for _, off := range []bool{false, true} {
		for _, src := range []string{"file", "memory"} {
			t.Run(fmt.Sprintf("%s/nochecksums=%v", src, off), func(t *testing.T) {
				r := newTestRoute(t, partSize)
				var body io.ReaderAt = bytes.NewReader(data)
				if src == "file" {
					body = tempFile(t, data)
				}
				c := &Client{Base: r.api.URL, Concurrency: 3, DisableChecksums: off, MultipartThreshold: partSize}
				var last int64
				c.Progress = func(sent, total int64) { last = sent }
				rec, err := c.Upload(context.Background(), File{Name: "f.bin", Size: int64(len(data)), Body: body})
				if err != nil || rec.Status != "confirmed" {
					t.Fatalf("upload: %v %+v", err, rec)
				}
				if !bytes.Equal(r.stored(), data) {
					t.Fatalf("storage holds %d bytes that differ from the file's %d", len(r.stored()), len(data))
				}
				if last != int64(len(data)) {
					t.Errorf("progress ended at %d", last)
				}
				for n := 1; n <= 6; n++ {
					want := ""
					if !off {
						want = b64Sum(data[(n-1)*partSize : min(n*partSize, len(data))])
					}
					if r.sums[n] != want {
						t.Errorf("part %d checksum %q, want %q", n, r.sums[n], want)
					}
					// Signed ahead once, and used while fresh.
					if r.signs[n] != 1 {
						t.Errorf("part %d signed %d times", n, r.signs[n])
					}
				}
				t.Logf("%d sign calls for 6 parts", r.calls)
			})
		}
	}
}

// An *os.File is sent through descriptors of the senders' own on Linux,
// anything else through ReadAt.
func TestPartSourceKind(t *testing.T) {
	f := tempFile(t, randomData(100))
	src := newPartSource(f)
	defer src.Close()
	_, isFile := src.(*fileSource)
	if want := runtime.GOOS == "linux"; isFile != want {
		t.Fatalf("file source %v, want %v", isFile, want)
	}
	if _, ok := newPartSource(bytes.NewReader(nil)).(readerAtSource); !ok {
		t.Fatal("a bytes.Reader is not read with ReadAt")
	}
	if isFile {
		// The sender's descriptor has its own offset: the caller's file
		// is not moved by sending.
		body, err := src.Part(40, 10)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(body)
		want := make([]byte, 10)
		_, _ = f.ReadAt(want, 40)
		if !bytes.Equal(got, want) {
			t.Fatalf("part bytes %x, want %x", got, want)
		}
		if pos, _ := f.Seek(0, io.SeekCurrent); pos != 0 {
			t.Fatalf("the caller's file moved to %d", pos)
		}
	}
}

// Storage that answers before it has read a part (500, refusing the
// first attempt of part 2, holding the connection a moment) makes the
// client send the part again; the retry carries exactly that part's
// bytes, and the other parts go once.
func TestMultipartRetryEarlyAnswer(t *testing.T) {
	const partSize = 8 << 20
	data := randomData(3*partSize - 5)
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("nochecksums=%v", off), func(t *testing.T) {
			r := newTestRoute(t, partSize)
			r.refuse = func(part, attempt int) bool { return part == 2 && attempt == 1 }
			r.hold = 200 * time.Millisecond
			c := &Client{Base: r.api.URL, Concurrency: 3, DisableChecksums: off, MultipartThreshold: partSize}
			if _, err := c.Upload(context.Background(), File{Name: "f.bin", Size: int64(len(data)), Body: tempFile(t, data)}); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(r.stored(), data) {
				t.Fatal("storage holds other bytes than the file's")
			}
			if r.attempts[2] != 2 || r.attempts[1] != 1 || r.attempts[3] != 1 {
				t.Fatalf("attempts %v, want 2 for part 2 and 1 for the others", r.attempts)
			}
		})
	}
}

// A part that net/http has not closed yet when the sender needs the next
// one (it may still be writing it after storage answered early) keeps the
// descriptor and closes it when it is closed; the next part gets another,
// so the two never share an offset. A part closed in time leaves the
// descriptor to the next.
func TestFileSourceHandOver(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("descriptors of their own are for Linux")
	}
	data := randomData(1000)
	src, ok := newPartSource(tempFile(t, data)).(*fileSource)
	if !ok {
		t.Fatal("not a file source")
	}
	read := func(r io.Reader, n int) []byte {
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	first, _ := src.Part(0, 100)
	fd1 := src.f
	if got := read(first, 10); !bytes.Equal(got, data[:10]) {
		t.Fatal("first part's bytes")
	}
	second, err := src.Part(500, 100) // first not closed
	if err != nil {
		t.Fatal(err)
	}
	if src.f == fd1 {
		t.Fatal("the next part shares the unclosed part's descriptor")
	}
	if got := read(first, 90); !bytes.Equal(got, data[10:100]) {
		t.Fatal("the unclosed part read other bytes after the next one started")
	}
	if n, err := first.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("past its end the part read %d, %v", n, err)
	}
	if got := read(second, 100); !bytes.Equal(got, data[500:600]) {
		t.Fatal("second part's bytes")
	}
	first.(io.Closer).Close()
	if _, err := fd1.Stat(); err == nil {
		t.Fatal("the handed-over descriptor stayed open after its part closed")
	}
	// Closed in time: the descriptor carries on.
	second.(io.Closer).Close()
	fd2 := src.f
	third, err := src.Part(900, 100)
	if err != nil {
		t.Fatal(err)
	}
	if src.f != fd2 {
		t.Fatal("a new descriptor although the last part was closed")
	}
	if got := read(third, 100); !bytes.Equal(got, data[900:]) {
		t.Fatal("third part's bytes")
	}
	// Closing the source while a part is out leaves the descriptor to it.
	src.Close()
	if _, err := fd2.Stat(); err != nil {
		t.Fatal("the source closed the descriptor of a part still out")
	}
	third.(io.Closer).Close()
	if _, err := fd2.Stat(); err == nil {
		t.Fatal("the descriptor stayed open")
	}
}

// Signatures past half their lifetime (by the route's clock, its
// expires_at against its Date) are not used: signatures that expire as
// they are made are each signed again by the part's sender, and the
// upload goes through; with a minute (the control above), each part is
// signed once.
func TestMultipartStaleSignatures(t *testing.T) {
	const partSize = 1 << 20
	data := randomData(4 * partSize)
	r := newTestRoute(t, partSize)
	r.ttl = 0
	c := &Client{Base: r.api.URL, Concurrency: 2, MultipartThreshold: partSize}
	if _, err := c.Upload(context.Background(), File{Name: "f.bin", Size: int64(len(data)), Body: bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.stored(), data) {
		t.Fatal("storage holds other bytes than the file's")
	}
	for n := 1; n <= 4; n++ {
		if r.signs[n] != 2 {
			t.Errorf("part %d signed %d times, want 2 (ahead, then fresh)", n, r.signs[n])
		}
	}
}

// A file shorter than the size declared fails the upload, with and
// without checksums, rather than sending short parts or hanging; the same
// file with its true size is the positive control.
func TestMultipartShortFile(t *testing.T) {
	const partSize = 1 << 20
	data := randomData(3*partSize + 10)
	for _, off := range []bool{false, true} {
		r := newTestRoute(t, partSize)
		c := &Client{Base: r.api.URL, Concurrency: 2, DisableChecksums: off, MultipartThreshold: partSize, Retries: 1}
		f := tempFile(t, data)
		if _, err := c.Upload(context.Background(), File{Name: "f.bin", Size: int64(len(data)) + partSize, Body: f}); err == nil {
			t.Errorf("nochecksums=%v: a file shorter than its size uploaded", off)
		}
		if _, err := c.Upload(context.Background(), File{Name: "f.bin", Size: int64(len(data)), Body: f}); err != nil {
			t.Errorf("nochecksums=%v: %v", off, err)
		}
	}
}
