package caddyupload

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestParseWebhook(t *testing.T) {
	var h Handler
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`upload {
		webhook https://app.example.com/hooks/uploads?v=1 {
			secret {env.UPLOAD_WEBHOOK_SECRET}
			timeout 5s
			max_attempts 20
			max_backoff 30m
			concurrency 32
		}
		max_size 5MiB
	}`))
	if err != nil {
		t.Fatal(err)
	}
	w := h.Webhook
	if w == nil || w.URL != "https://app.example.com/hooks/uploads?v=1" || w.Secret != "{env.UPLOAD_WEBHOOK_SECRET}" ||
		time.Duration(w.Timeout) != 5*time.Second || w.MaxAttempts != 20 || time.Duration(w.MaxBackoff) != 30*time.Minute || w.Concurrency != 32 {
		t.Errorf("unexpected webhook: %+v", w)
	}
	if h.MaxSize != 5<<20 {
		t.Errorf("the block after webhook was not parsed: max_size %d", h.MaxSize)
	}

	var minimal Handler
	if err := minimal.UnmarshalCaddyfile(caddyfile.NewTestDispenser("upload {\n webhook http://app/h {\n secret s\n }\n}")); err != nil {
		t.Fatal(err)
	}
	if w := minimal.Webhook; w == nil || w.URL != "http://app/h" || w.Secret != "s" || w.Timeout != 0 || w.MaxAttempts != 0 || w.MaxBackoff != 0 || w.Concurrency != 0 {
		t.Errorf("unexpected minimal webhook: %+v", w)
	}
}

func TestParseWebhookErrors(t *testing.T) {
	for _, in := range []string{
		"upload {\n webhook\n}",
		"upload {\n webhook http://a http://b {\n secret s\n }\n}",
		"upload {\n webhook http://a\n}",
		"upload {\n webhook http://a {\n timeout 5s\n }\n}",
		"upload {\n webhook http://a {\n secret\n }\n}",
		"upload {\n webhook http://a {\n secret s\n timeout soon\n }\n}",
		"upload {\n webhook http://a {\n secret s\n max_attempts 0\n }\n}",
		"upload {\n webhook http://a {\n secret s\n max_attempts many\n }\n}",
		"upload {\n webhook http://a {\n secret s\n max_backoff\n }\n}",
		"upload {\n webhook http://a {\n secret s\n bogus\n }\n}",
		"upload {\n webhook http://a {\n secret s\n concurrency 0\n }\n}",
		"upload {\n webhook http://a {\n secret s\n concurrency 101\n }\n}",
		"upload {\n webhook http://a {\n secret s\n concurrency -1\n }\n}",
		"upload {\n webhook http://a {\n secret s\n concurrency lots\n }\n}",
		"upload {\n webhook http://a {\n secret s\n concurrency\n }\n}",
		"upload {\n webhook http://a {\n secret s\n concurrency 2 4\n }\n}",
	} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err == nil {
			t.Errorf("%q: expected an error", in)
		}
	}
}

func TestWebhookProvision(t *testing.T) {
	t.Setenv("CU_TEST_HOOK_SECRET", "0123456789abcdef-secret")
	w := Webhook{URL: "http://127.0.0.1:9/hook", Secret: "{env.CU_TEST_HOOK_SECRET}"}
	if err := w.provision(); err != nil {
		t.Fatal(err)
	}
	if string(w.cfg.Secret) != "0123456789abcdef-secret" || w.cfg.URL != "http://127.0.0.1:9/hook" || time.Duration(w.Timeout) != 10*time.Second || w.MaxAttempts != 12 || time.Duration(w.MaxBackoff) != time.Hour || w.Concurrency != 8 || w.cfg.Concurrency != 8 {
		t.Errorf("defaults or secret not applied: %+v", w)
	}
	set := Webhook{URL: "http://a/h", Secret: "0123456789abcdef", Concurrency: 1}
	if err := set.provision(); err != nil || set.cfg.Concurrency != 1 {
		t.Errorf("concurrency 1 not passed on: %v, %+v", err, set.cfg)
	}
	for name, bad := range map[string]Webhook{
		"unset secret":  {URL: "http://a/h", Secret: "{env.CU_TEST_HOOK_UNSET}"},
		"short secret":  {URL: "http://a/h", Secret: "short"},
		"relative url":  {URL: "/hook", Secret: "0123456789abcdef"},
		"ftp url":       {URL: "ftp://a/h", Secret: "0123456789abcdef"},
		"short backoff": {URL: "http://a/h", Secret: "0123456789abcdef", MaxBackoff: 1},
		"concurrency":   {URL: "http://a/h", Secret: "0123456789abcdef", Concurrency: 101},
		"negative conc": {URL: "http://a/h", Secret: "0123456789abcdef", Concurrency: -1},
	} {
		if err := bad.provision(); err == nil {
			t.Errorf("%s: expected an error", name)
		}
	}
}
