package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/internal/realservers"
	"github.com/caddyupload/caddyupload/storage"
	"github.com/caddyupload/caddyupload/storage/s3store"
	"github.com/caddyupload/caddyupload/storage/storagetest"
)

// TestEmbeddedServerConformance runs the object-store conformance suite —
// the one every backend passes — against the embedded server, started
// the way Caddy starts it: this binary's embedded-s3 command.
func TestEmbeddedServerConformance(t *testing.T) {
	port := realservers.FreePort(t)
	access, secret := randomHex(t, 10), randomHex(t, 20)
	cmd := exec.Command(binary, "embedded-s3", "--listen", realservers.Addr(port), "--data-dir", t.TempDir())
	cmd.Env = append(cmd.Environ(),
		"CADDYUPLOAD_EMBEDDED_S3_ACCESS_KEY_ID="+access,
		"CADDYUPLOAD_EMBEDDED_S3_SECRET_ACCESS_KEY="+secret)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe() // the server exits when its stdin closes
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	endpoint := "http://" + realservers.Addr(port)
	waitFor(t, "the embedded server", func() bool {
		resp, err := http.Get(endpoint + "/_health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	storagetest.RunObjectStore(t, func(t *testing.T) storage.ObjectStore {
		st, err := s3store.New(context.Background(), s3store.Config{
			Endpoint: endpoint, Bucket: "conf-" + randomHex(t, 6), Region: "us-east-1",
			AccessKeyID: access, SecretAccessKey: secret, UsePathStyle: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := st.EnsureBucket(ctx); err != nil {
			t.Fatal(err)
		}
		return st
	})
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
