package client

import (
	"bytes"
	"context"
	"io"
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
