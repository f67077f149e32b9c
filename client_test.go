package caddyupload

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	"github.com/caddyupload/caddyupload/client"
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
		c := &client.Client{Base: s.base + "/up", Auth: client.Basic("alice", testUsers["alice"]), Concurrency: 3}
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
