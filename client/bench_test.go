package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkPartChecksum is what the Go client spends on a part's SHA-256
// before it sends it: one read of the part through the hash. "read" is the
// same read into nothing, the floor any upload pays.
func BenchmarkPartChecksum(b *testing.B) {
	part := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB, the default part size
	ra := bytes.NewReader(part)
	b.Run("sha256", func(b *testing.B) {
		b.SetBytes(int64(len(part)))
		for b.Loop() {
			if _, err := sha256Hex(context.Background(), io.NewSectionReader(ra, 0, int64(len(part)))); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("read", func(b *testing.B) {
		b.SetBytes(int64(len(part)))
		buf := make([]byte, 256<<10)
		for b.Loop() {
			if _, err := io.CopyBuffer(io.Discard, io.NewSectionReader(ra, 0, int64(len(part))), buf); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// fakeRoute is the route's API and a storage server that takes every part
// and throws it away: what is left is the client's own cost of an upload,
// plus loopback TCP.
func fakeRoute(b *testing.B, partSize int64) string {
	b.Helper()
	store := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil || n != r.ContentLength {
			http.Error(w, "short body", http.StatusBadRequest)
			return
		}
		w.Header().Set("ETag", `"e"`)
	}))
	b.Cleanup(store.Close)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/":
			var in struct{ Size int64 }
			_ = json.NewDecoder(r.Body).Decode(&in)
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"id":"u","multipart":{"part_size":%d,"part_count":%d}}`, partSize, (in.Size+partSize-1)/partSize)
		case strings.HasSuffix(r.URL.Path, "/parts"):
			var in struct{ Numbers []int32 }
			_ = json.NewDecoder(r.Body).Decode(&in)
			fmt.Fprintf(w, `{"parts":[{"number":%d,"url":"%s/p?partNumber=%d","headers":{}}]}`, in.Numbers[0], store.URL, in.Numbers[0])
		case strings.HasSuffix(r.URL.Path, "/complete"):
			fmt.Fprint(w, `{"id":"u","status":"confirmed"}`)
		default:
			http.NotFound(w, r)
		}
	}))
	b.Cleanup(api.Close)
	return api.URL
}

// BenchmarkUpload is a 64 MiB multipart upload in 8 MiB parts, 4 at a
// time, against fakeRoute, from a file and from memory, with and without
// part checksums. The fake storage shares the process, so this is for
// comparing versions of the client; bench/run.sh -only client measures it
// against a real server and another client.
func BenchmarkUpload(b *testing.B) {
	const size, partSize = 64 << 20, 8 << 20
	base := fakeRoute(b, partSize)
	data := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	path := filepath.Join(b.TempDir(), "f.bin")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	for _, src := range []struct {
		name string
		body io.ReaderAt
	}{{"file", f}, {"memory", bytes.NewReader(data)}} {
		for _, off := range []bool{false, true} {
			name := src.name + "/sha256"
			if off {
				name = src.name + "/nosum"
			}
			b.Run(name, func(b *testing.B) {
				c := &Client{Base: base, Concurrency: 4, DisableChecksums: off}
				b.SetBytes(size)
				for b.Loop() {
					if _, err := c.Upload(context.Background(), File{Name: "f.bin", Size: size, Body: src.body}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
