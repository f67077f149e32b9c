package embedded

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func TestGlobalOption(t *testing.T) {
	d := caddyfile.NewTestDispenser(`embedded_s3 {
		listen 127.0.0.1:9200
		data_dir /var/lib/uploads
		bucket media
		region eu-west-1
		access_key_id {env.S3_KEY}
		secret_access_key {env.S3_SECRET}
	}`)
	v, err := parseGlobalOption(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	app, ok := v.(httpcaddyfile.App)
	if !ok || app.Name != "embedded_s3" {
		t.Fatalf("got %#v, want the embedded_s3 app", v)
	}
	var got map[string]string
	if err := json.Unmarshal(app.Value, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"listen": "127.0.0.1:9200", "data_dir": "/var/lib/uploads", "bucket": "media", "region": "eu-west-1",
		"access_key_id": "{env.S3_KEY}", "secret_access_key": "{env.S3_SECRET}",
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestGlobalOptionDefaultsToEmpty(t *testing.T) {
	v, err := parseGlobalOption(caddyfile.NewTestDispenser(`embedded_s3`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(v.(httpcaddyfile.App).Value); got != "{}" {
		t.Errorf("JSON = %s, want {} (defaults are filled at provision)", got)
	}
}

func TestCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct{ name, input, want string }{
		{"unknown", "embedded_s3 {\n port 1\n}", "unknown subdirective"},
		{"missing value", "embedded_s3 {\n listen\n}", "wrong argument count"},
		{"extra value", "embedded_s3 {\n bucket a b\n}", "wrong argument count"},
		{"argument", "embedded_s3 on", "wrong argument count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseGlobalOption(caddyfile.NewTestDispenser(tc.input), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestHandlerTakesNoOptions(t *testing.T) {
	if err := new(Handler).UnmarshalCaddyfile(caddyfile.NewTestDispenser("embedded_s3")); err != nil {
		t.Errorf("handler: %v", err)
	}
	if err := new(Handler).UnmarshalCaddyfile(caddyfile.NewTestDispenser("embedded_s3 {\n bucket x\n}")); err == nil {
		t.Error("handler with a block: no error")
	}
}

func TestStorageCaddyfile(t *testing.T) {
	var s Storage
	if err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser("embedded")); err != nil || s.PublicOrigin != "" {
		t.Errorf("storage: %v, %+v", err, s)
	}
	s = Storage{}
	if err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser("embedded {\n public_origin https://files.example.com\n}")); err != nil || s.PublicOrigin != "https://files.example.com" {
		t.Errorf("public_origin: %v, %+v", err, s)
	}
	for _, input := range []string{
		"embedded extra",
		"embedded {\n public_origin\n}",
		"embedded {\n public_origin https://a.example https://b.example\n}",
		"embedded {\n bucket x\n}",
	} {
		if err := new(Storage).UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err == nil {
			t.Errorf("%q: no error", input)
		}
	}
}

func TestParseOrigin(t *testing.T) {
	for raw, want := range map[string]string{
		"https://files.example.com":      "https://files.example.com",
		"https://files.example.com/":     "https://files.example.com",
		"http://127.0.0.1:8080":          "http://127.0.0.1:8080",
		"https://[::1]:8443":             "https://[::1]:8443",
		"files.example.com":              "",
		"ftp://files.example.com":        "",
		"https://files.example.com/up":   "",
		"https://files.example.com/?a=b": "",
		"https://u:p@files.example.com":  "",
		"https://":                       "",
	} {
		got, err := parseOrigin(raw)
		if (err == nil) != (want != "") || got != want {
			t.Errorf("parseOrigin(%q) = %q, %v; want %q", raw, got, err, want)
		}
	}
}

func TestCheckLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:9107": true,
		"[::1]:9107":     true,
		"localhost:9107": true,
		"0.0.0.0:9107":   false,
		":9107":          false,
		"10.0.0.1:9107":  false,
		"127.0.0.1":      false,
		"127.0.0.1:0":    false,
	} {
		if err := checkLoopback(addr); (err == nil) != ok {
			t.Errorf("checkLoopback(%q) = %v, want ok=%v", addr, err, ok)
		}
	}
}
