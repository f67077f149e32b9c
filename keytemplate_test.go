package caddyupload

import (
	"strings"
	"testing"
	"time"
)

func TestParseKeyTemplate(t *testing.T) {
	for _, tc := range []struct {
		tmpl   string
		ok     bool
		prefix string
	}{
		{"{uuid}{ext}", true, ""},
		{"avatars/{user}/{uuid}{ext}", true, "avatars/"},
		{"docs/{year}/{month}/{day}/{id}", true, "docs/"},
		{"x/{claims.email}/{uuid}", true, "x/"},
		{"{ext}", false, ""},           // not unique
		{"/abs/{uuid}", false, ""},     // leading slash
		{"a/../{uuid}", false, ""},     // dot-dot segment
		{"a//{uuid}", false, ""},       // empty segment
		{"a/./{uuid}", false, ""},      // dot segment
		{"a/{nope}/{uuid}", false, ""}, // unknown placeholder
		{"a/{uuid", false, ""},         // unclosed
		{"a}/{uuid}", false, ""},       // stray brace
		{"a\x01/{uuid}", false, ""},    // control character
		{"a\\b/{uuid}", false, ""},     // backslash
		{"", false, ""},
	} {
		kt, err := parseKeyTemplate(tc.tmpl)
		if (err == nil) != tc.ok {
			t.Errorf("parseKeyTemplate(%q) error = %v, want ok=%v", tc.tmpl, err, tc.ok)
			continue
		}
		if tc.ok && kt.prefix != tc.prefix {
			t.Errorf("parseKeyTemplate(%q).prefix = %q, want %q", tc.tmpl, kt.prefix, tc.prefix)
		}
	}
}

func TestRenderKeyEscapesCallerValues(t *testing.T) {
	kt, err := parseKeyTemplate("u/{user}/{claims.email}/{year}-{month}-{day}/{uuid}{ext}")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 7, 23, 0, 0, 0, time.UTC)
	for _, sub := range []string{"../../etc", "/root", "a/b", "..", ".", "", "x\x00y", "ü/ß", strings.Repeat("a", 500), "%2e%2e"} {
		key := kt.render(keyVars{UUID: "UUID", Ext: ".png", Subject: sub, Claims: map[string]any{"email": "../" + sub + "@x.com"}, Now: now})
		segs := strings.Split(key, "/")
		if len(segs) != 5 {
			t.Errorf("subject %q: key %q has %d segments, want 5", sub, key, len(segs))
		}
		for _, s := range segs {
			if s == "" || s == "." || s == ".." {
				t.Errorf("subject %q: key %q has segment %q", sub, key, s)
			}
		}
		for _, c := range key {
			if c < 0x20 || c == 0x7f || c > 0x7e {
				t.Errorf("subject %q: key %q has byte %q", sub, key, c)
			}
		}
		if len(key) > maxKeyLen {
			t.Errorf("key too long: %d", len(key))
		}
		if !strings.HasSuffix(key, "/2026-03-07/UUID.png") {
			t.Errorf("key %q: wrong date or tail", key)
		}
	}
	got := kt.render(keyVars{UUID: "U", Ext: ".jpg", Subject: "alice", Claims: map[string]any{"email": "a.b@c.com"}, Now: now})
	if want := "u/alice/a.b%40c.com/2026-03-07/U.jpg"; got != want {
		t.Errorf("render = %q, want %q", got, want)
	}
}

func TestEscapeKeyValue(t *testing.T) {
	for in, want := range map[string]string{
		"alice":     "alice",
		"":          "_",
		"..":        "%2E.",
		".hidden":   "%2Ehidden",
		"a/b":       "a%2Fb",
		"a b":       "a%20b",
		"x%y":       "x%25y",
		"é":         "%C3%A9",
		"A-Z_0.9":   "A-Z_0.9",
		"line\nend": "line%0Aend",
	} {
		if got := escapeKeyValue(in); got != want {
			t.Errorf("escapeKeyValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestKeyPatternMatchesOnlyItsKeys(t *testing.T) {
	kt, err := parseKeyTemplate("u/{user}/{year}/{month}/{uuid}{ext}")
	if err != nil {
		t.Fatal(err)
	}
	p := kt.pattern()
	for i := 0; i < 50; i++ {
		key := kt.render(keyVars{UUID: "0b0e7c9e-8f5d-4c1a-9c39-2b8f0a1d2e3f", Ext: ".png", Subject: strings.Repeat("ü.", i), Now: time.Now()})
		if !p.MatchString(key) {
			t.Fatalf("pattern rejects its own key %q", key)
		}
	}
	for _, k := range []string{"u/alice/2026/03/not-a-uuid.png", "other/alice/2026/03/0b0e7c9e-8f5d-4c1a-9c39-2b8f0a1d2e3f", "u/a/b/2026/03/0b0e7c9e-8f5d-4c1a-9c39-2b8f0a1d2e3f", "canary.txt"} {
		if p.MatchString(k) {
			t.Errorf("pattern matches foreign key %q", k)
		}
	}
}

// Long caller values keep a hash of the whole value, so two that share
// their first 64 bytes still give two key prefixes.
func TestLongKeyValuesStayDistinct(t *testing.T) {
	a := strings.Repeat("u", 70) + "a"
	b := strings.Repeat("u", 70) + "b"
	ea, eb := escapeKeyValue(a), escapeKeyValue(b)
	if ea == eb {
		t.Fatalf("two long values escape alike: %q", ea)
	}
	if len(ea) != 48+1+16 || !strings.HasPrefix(ea, strings.Repeat("u", 48)+"~") {
		t.Errorf("long value escaped as %q", ea)
	}
	// A short value can never look like a cut one: its '~' is escaped.
	if got := escapeKeyValue("u~1"); got != "u%7E1" {
		t.Errorf("escapeKeyValue(u~1) = %q", got)
	}
	// Positive control: values up to 64 bytes are kept whole.
	if v := strings.Repeat("k", 64); escapeKeyValue(v) != v {
		t.Errorf("a 64-byte value was changed: %q", escapeKeyValue(v))
	}
}

func TestSubjectsWithControlCharactersRefused(t *testing.T) {
	for _, sub := range []string{"a\nb", "a\rb", "a\x00"} {
		if checkSubject(sub) == nil {
			t.Errorf("subject %q accepted", sub)
		}
	}
	if e := checkSubject("alice@example.com"); e != nil {
		t.Errorf("plain subject refused: %v", e)
	}
}
