package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDirectiveOrder checks that presigned requests are routed before an
// SPA's rewrite and a site-wide basic_auth, without an order line.
func TestDirectiveOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "Caddyfile")
	caddyfile := `http://example.com {
	basic_auth {
		alice "` + passwordHash + `"
	}
	try_files {path} /index.html
	file_server
	embedded_s3
}
`
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "adapt", "--config", path).Output()
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	js := string(out)
	at := func(handler string) int {
		i := strings.Index(js, `"handler":"`+handler+`"`)
		if i < 0 {
			t.Fatalf("no %s handler in %s", handler, js)
		}
		return i
	}
	proxy := at("embedded_s3")
	for _, later := range []string{"rewrite", "authentication", "file_server"} {
		if at(later) < proxy {
			t.Errorf("%s runs before embedded_s3", later)
		}
	}
}
