package caddyupload

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func TestRedactURI(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/b/k.txt", "/b/k.txt"},
		{"/b/k.txt?partNumber=1", "/b/k.txt?partNumber=1"},
		{
			"/b/k.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=abcd",
			"/b/k.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20260101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host",
		},
		// Whatever the case or escaping of the name.
		{"/b/k?x-amz-signature=a&X%2DAmz%2DCredential=b&X-AMZ-SECURITY-TOKEN=c&uploadId=u", "/b/k?uploadId=u"},
		{"/b/k?X-Amz-Signature=a", "/b/k"},
		{"https://site.example/b/k?X-Amz-Signature=a&response-content-type=text%2Fplain#f", "https://site.example/b/k?response-content-type=text%2Fplain#f"},
		{"/b/k?&&X-Amz-Signature", "/b/k?&"},
	} {
		if got := redactURI(tc.in); got != tc.want {
			t.Errorf("redactURI(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestAccessLoggedMirrorsCaddy(t *testing.T) {
	logs := &caddyhttp.ServerLogConfig{
		LoggerNames:       map[string]caddyhttp.StringArray{"site.example": {"log0"}, "*.apps.example": {"log1", "log2"}},
		SkipHosts:         []string{"quiet.example"},
		SkipUnmappedHosts: false,
		DefaultLoggerName: "default",
	}
	for _, tc := range []struct {
		host   string
		logged bool
		names  []string
	}{
		{"site.example", true, []string{"log0"}},
		{"site.example:8443", true, []string{"log0"}},
		{"a.apps.example", true, []string{"log1", "log2"}},
		{"quiet.example", false, nil},
		{"other.example", true, []string{"default"}},
	} {
		if got := accessLogged(logs, tc.host); got != tc.logged {
			t.Errorf("accessLogged(%q) = %v, want %v", tc.host, got, tc.logged)
		}
		if !tc.logged {
			continue
		}
		r := httptest.NewRequest(http.MethodGet, "http://"+tc.host+"/", nil)
		r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{}))
		if got := accessLoggerNames(logs, r); !slices.Equal(got, tc.names) {
			t.Errorf("accessLoggerNames(%q) = %v, want %v", tc.host, got, tc.names)
		}
	}
	logs.SkipUnmappedHosts = true
	if accessLogged(logs, "other.example") {
		t.Error("an unmapped host is logged although skip_unmapped_hosts is set")
	}

	// log_name overrides the mapping.
	r := httptest.NewRequest(http.MethodGet, "http://site.example/", nil)
	r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{
		caddyhttp.AccessLoggerNameVarKey: []any{"named"},
	}))
	if got := accessLoggerNames(logs, r); !slices.Equal(got, []string{"named"}) {
		t.Errorf("with log_name: %v, want [named]", got)
	}
}

// TestLogWithoutCredentialsLeavesUnloggedRequests checks the cases where
// Caddy's own entry stays: no access log, credentials logged on purpose,
// or the entry already skipped. Then, with an access log, the entry is
// taken over (control).
func TestLogWithoutCredentialsLeavesUnloggedRequests(t *testing.T) {
	request := func(srv *caddyhttp.Server, vars map[string]any) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "http://site.example/b/k?X-Amz-Signature=a", nil)
		ctx := context.WithValue(r.Context(), caddyhttp.VarsCtxKey, vars)
		if srv != nil {
			ctx = context.WithValue(ctx, caddyhttp.ServerCtxKey, srv)
		}
		return r.WithContext(ctx)
	}
	logged := &caddyhttp.Server{Logs: &caddyhttp.ServerLogConfig{}}
	for name, tc := range map[string]struct {
		srv  *caddyhttp.Server
		vars map[string]any
	}{
		"no server":       {nil, map[string]any{}},
		"no access log":   {&caddyhttp.Server{}, map[string]any{}},
		"log credentials": {&caddyhttp.Server{Logs: &caddyhttp.ServerLogConfig{ShouldLogCredentials: true}}, map[string]any{}},
		"already skipped": {logged, map[string]any{caddyhttp.LogSkipVar: true}},
	} {
		r := request(tc.srv, tc.vars)
		w := httptest.NewRecorder()
		got, done := LogWithoutCredentials(w, r)
		done()
		if got != w {
			t.Errorf("%s: the writer was wrapped", name)
		}
		if skip, _ := tc.vars[caddyhttp.LogSkipVar].(bool); skip != (name == "already skipped") {
			t.Errorf("%s: log_skip %v", name, skip)
		}
	}

	vars := map[string]any{}
	w := httptest.NewRecorder()
	got, _ := LogWithoutCredentials(w, request(logged, vars))
	if got == http.ResponseWriter(w) || vars[caddyhttp.LogSkipVar] != true {
		t.Fatal("with an access log, Caddy's entry is not taken over")
	}
}
