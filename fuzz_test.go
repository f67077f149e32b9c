package caddyupload

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Fuzz targets for every parser of client or operator input. `go test`
// runs their seeds; `go test -fuzz FuzzX` explores.

func FuzzKeyTemplate(f *testing.F) {
	for _, s := range []string{"{uuid}{ext}", "a/{user}/{claims.email}/{year}/{uuid}", "../{uuid}", "{", "}{uuid}", "a//{id}"} {
		f.Add(s, "alice", "a@b.c")
	}
	f.Fuzz(func(t *testing.T, tmpl, subject, claim string) {
		kt, err := parseKeyTemplate(tmpl)
		if err != nil {
			return
		}
		key := kt.render(keyVars{UUID: "0b0e7c9e-8f5d-4c1a-9c39-2b8f0a1d2e3f", ID: newID(), Ext: ".png", Subject: subject, Claims: map[string]any{"email": claim}, Now: time.Now()})
		if strings.HasPrefix(key, "/") {
			t.Fatalf("key %q starts with /", key)
		}
		for _, seg := range strings.Split(key, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("template %q, subject %q: key %q has segment %q", tmpl, subject, key, seg)
			}
		}
		for _, r := range key {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("key %q has a control character", key)
			}
		}
		if !strings.HasPrefix(key, kt.prefix) || !kt.pattern().MatchString(key) {
			t.Fatalf("template %q: key %q outside its own prefix or pattern", tmpl, key)
		}
	})
}

func FuzzMediaType(f *testing.F) {
	for _, s := range []string{"image/png", "text/plain; charset=utf-8", "a/b;c", "", "*/*", "image/*"} {
		f.Add(s, "photo.PNG")
	}
	f.Fuzz(func(t *testing.T, typ, filename string) {
		mt, ok := parseMediaType(typ)
		if !ok {
			return
		}
		if strings.ContainsAny(mt, "*; \t\r\n") || mt != strings.ToLower(mt) {
			t.Fatalf("parseMediaType(%q) = %q", typ, mt)
		}
		ext, ok := keyExtension(mt, fileExtension(filename))
		if ok && ext != "" && (!strings.HasPrefix(ext, ".") || strings.ContainsAny(ext, "/\\ ") || !utf8.ValidString(ext)) {
			t.Fatalf("keyExtension(%q, %q) = %q", mt, filename, ext)
		}
	})
}

// FuzzCreateBody sends arbitrary bodies to the create route: every answer
// is a documented status with a JSON error, never a panic or a 500.
func FuzzCreateBody(f *testing.F) {
	for _, s := range []string{
		`{"filename":"a.png","size":10,"type":"image/png"}`,
		`{"filename":"a.png","size":1e3,"type":"image/png"}`,
		`{"filename":"","size":-1,"type":"x"}`,
		`{"filename":"a","size":1,"type":"image/png","metadata":{"k":"v"},"sha256":"00"}`,
		`[`, `null`, `{}`,
	} {
		f.Add(s)
	}
	h := fuzzHandler(f)
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, req, nil); err != nil {
			t.Fatal(err)
		}
		switch w.Code {
		case 201, 400, 413, 415:
		default:
			t.Fatalf("body %q: status %d %s", body, w.Code, w.Body)
		}
		if w.Code != 201 && !strings.Contains(w.Body.String(), `"code"`) {
			t.Fatalf("body %q: error without a code: %s", body, w.Body)
		}
	})
}

// fuzzHandler is the benchmark handler: a real ledger and presigner, no
// storage server needed for create.
func fuzzHandler(f *testing.F) *Handler {
	h := &Handler{Key: "u/{user}/{uuid}{ext}", Types: []string{"image/*", "text/plain"}, MaxSize: 1 << 20}
	h.setDefaults()
	if err := provisionForTest(f, h); err != nil {
		f.Fatal(err)
	}
	return h
}
