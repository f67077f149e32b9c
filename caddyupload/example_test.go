package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCaddyfileExampleValidates adapts and validates the Caddyfile the
// README runs, with this binary, so the example never drifts from the code.
func TestCaddyfileExampleValidates(t *testing.T) {
	home := t.TempDir()
	for _, args := range [][]string{
		{"adapt", "--config", "../Caddyfile.example"},
		{"validate", "--config", "../Caddyfile.example"},
	} {
		cmd := exec.Command(binary, args...)
		cmd.Env = append(cmd.Environ(), "HOME="+home, "XDG_DATA_HOME="+filepath.Join(home, "data"), "XDG_CONFIG_HOME="+filepath.Join(home, "config"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if args[0] == "adapt" && (!strings.Contains(string(out), `"handler":"upload"`) || !strings.Contains(string(out), `"embedded_s3"`)) {
			t.Errorf("adapted config lacks the upload handler or the embedded server:\n%s", out)
		}
	}
}
