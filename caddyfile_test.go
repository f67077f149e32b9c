package caddyupload

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden adapt files")

func TestUnmarshalCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`upload {
		name avatars
		s3 {
			bucket media
			region auto
			endpoint https://acct.r2.cloudflarestorage.com
			access_key_id {env.S3_KEY}
			secret_access_key {env.S3_SECRET}
			path_style off
			disable_post
		}
		oidc {
			issuer https://id.example.com
			audience web-app other-app
			cookie session_token
			require groups uploaders admins
			require email_verified true
			leeway 10s
		}
		max_size 5MiB
		min_size 10
		types image/jpeg image/png
		types image/webp
		key avatars/{user}/{http.request.uuid}{ext}
		method put
		url_ttl 90s
		pending_ttl 2h
		multipart_threshold 64MiB
		part_size 8MiB
		sweep_interval 30s
		sweeper off
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if h.Name != "avatars" || h.MaxSize != 5<<20 || h.MinSize != 10 || h.Key != "avatars/{user}/{uuid}{ext}" ||
		strings.Join(h.Types, ",") != "image/jpeg,image/png,image/webp" || h.Method != "put" ||
		time.Duration(h.URLTTL) != 90*time.Second || time.Duration(h.PendingTTL) != 2*time.Hour ||
		h.MultipartThreshold != 64<<20 || h.PartSize != 8<<20 || time.Duration(h.SweepInterval) != 30*time.Second || !h.DisableSweeper {
		t.Errorf("unexpected handler: %+v", h)
	}
	var s3 map[string]any
	if err := json.Unmarshal(h.StorageRaw, &s3); err != nil {
		t.Fatal(err)
	}
	if s3["backend"] != "s3" || s3["bucket"] != "media" || s3["secret_access_key"] != "{env.S3_SECRET}" || s3["path_style"] != false || s3["disable_post"] != true {
		t.Errorf("unexpected storage: %s", h.StorageRaw)
	}
	o := h.OIDC
	if o == nil || o.Issuer != "https://id.example.com" || strings.Join(o.Audiences, ",") != "web-app,other-app" || o.Cookie != "session_token" ||
		len(o.Require) != 2 || o.Require[0].Claim != "groups" || strings.Join(o.Require[0].Values, ",") != "uploaders,admins" || time.Duration(o.Leeway) != 10*time.Second {
		t.Errorf("unexpected oidc: %+v", o)
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	for _, in := range []string{
		`upload arg`,
		`upload { bogus }`,
		`upload { max_size }`,
		`upload { max_size lots }`,
		`upload { max_size 0 }`,
		`upload { url_ttl forever }`,
		`upload { url_ttl -5s }`,
		"upload {\n types\n}",
		`upload { key a b }`,
		`upload { sweeper maybe }`,
		`upload { s3 { region auto } }`,
		`upload { s3 { bucket b; bogus x } }`,
		`upload { s3 { bucket b
			path_style sideways } }`,
		`upload { oidc { audience x } }`,
		`upload { oidc { issuer https://x } }`,
		"upload {\n oidc {\n issuer https://x\n audience a\n require groups\n }\n}",
		`upload { oidc { issuer https://x
			audience a
			bogus } }`,
	} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err == nil {
			t.Errorf("%q: expected an error", in)
		}
	}
}

func TestValidate(t *testing.T) {
	valid := func() Handler {
		h := Handler{}
		h.setDefaults()
		return h
	}
	h := valid()
	if err := h.Validate(); err != nil {
		t.Fatalf("defaults must be valid: %v", err)
	}
	for name, mutate := range map[string]func(*Handler){
		"max below min":       func(h *Handler) { h.MaxSize, h.MinSize = 5, 10 },
		"method":              func(h *Handler) { h.Method = "patch" },
		"url_ttl too long":    func(h *Handler) { h.URLTTL = caddy.Duration(8 * 24 * time.Hour) },
		"pending below url":   func(h *Handler) { h.PendingTTL = caddy.Duration(time.Second) },
		"part too small":      func(h *Handler) { h.PartSize = 1 << 20 },
		"threshold too large": func(h *Handler) { h.MultipartThreshold = 6 << 30 },
		"bad type":            func(h *Handler) { h.Types = []string{"image"} },
	} {
		h := valid()
		mutate(&h)
		if err := h.Validate(); err == nil {
			t.Errorf("%s: expected an error", name)
		}
	}
}

// TestCaddyfileAdapt compares `caddy adapt` output with the golden files in
// testdata/adapt (a Caddyfile, a line of dashes, the JSON). Run with
// -update to rewrite them.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.SplitN(string(data), "\n----------\n", 2)
			if len(parts) != 2 {
				t.Fatalf("%s: missing ---------- separator", f)
			}
			adapter := caddyconfig.GetAdapter("caddyfile")
			got, warnings, err := adapter.Adapt([]byte(parts[0]), map[string]any{"filename": "Caddyfile"})
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			for _, w := range warnings {
				if strings.Contains(w.Message, "not formatted") {
					continue
				}
				t.Errorf("warning: %s:%d: %s", w.File, w.Line, w.Message)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, got, "", "\t"); err != nil {
				t.Fatal(err)
			}
			if *updateGolden {
				if err := os.WriteFile(f, []byte(parts[0]+"\n----------\n"+pretty.String()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if want := strings.TrimSpace(parts[1]); strings.TrimSpace(pretty.String()) != want {
				t.Errorf("adapted JSON differs from %s (run go test -run TestCaddyfileAdapt -update to accept):\n%s", f, pretty.String())
			}
			if strings.Contains(pretty.String(), "secret-value") {
				t.Error("a secret reached the adapted JSON")
			}
		})
	}
}
