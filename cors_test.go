package caddyupload

import (
	"bytes"
	"strings"
	"testing"

	"github.com/caddyupload/caddyupload/storage/s3store"
)

func TestCORSProblems(t *testing.T) {
	good := s3store.UploadCORS([]string{"https://example.com"})
	if p := corsProblems([]s3store.CORSRule{good}, "https://example.com"); p != nil {
		t.Errorf("the upload rule has problems: %v", p)
	}
	if p := corsProblems([]s3store.CORSRule{good}, "https://other.example"); len(p) != 1 {
		t.Errorf("another origin: %v", p)
	}
	noETag := good
	noETag.ExposeHeaders = nil
	noPost := good
	noPost.AllowedMethods = []string{"GET", "PUT"}
	if p := corsProblems([]s3store.CORSRule{noETag}, "https://example.com"); len(p) != 1 || !strings.Contains(p[0], "ETag") {
		t.Errorf("no ETag: %v", p)
	}
	if p := corsProblems([]s3store.CORSRule{noPost}, "https://example.com"); len(p) != 2 {
		t.Errorf("no POST, HEAD: %v", p)
	}
	wild := good
	wild.AllowedOrigins = []string{"https://*.example.com"}
	if p := corsProblems([]s3store.CORSRule{wild}, "https://app.example.com"); p != nil {
		t.Errorf("wildcard origin: %v", p)
	}
}

// TestCORSCommand checks, applies, and checks again against a real server.
func TestCORSCommand(t *testing.T) {
	srv := oneServer(t)
	bucket := srv.NewBucket(t)
	t.Setenv("S3_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("S3_SECRET_ACCESS_KEY", srv.SecretKey)
	run := func(args ...string) (string, error) {
		cmd := corsCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append([]string{"--bucket", bucket, "--endpoint", srv.Endpoint, "--path-style", "--origin", "https://app.example"}, args...))
		err := cmd.Execute()
		return out.String(), err
	}
	if out, err := run(); err == nil || !strings.Contains(out, "no CORS rule") {
		t.Fatalf("check before apply: %v %s", err, out)
	}
	if out, err := run("--apply"); err != nil || !strings.Contains(out, "applied") {
		t.Fatalf("apply: %v %s", err, out)
	}
	if out, err := run(); err != nil || !strings.HasPrefix(out, "ok:") {
		t.Fatalf("check after apply: %v %s", err, out)
	}
}
