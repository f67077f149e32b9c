package caddyupload

import "testing"

func TestParseMediaType(t *testing.T) {
	for in, want := range map[string]string{
		"image/png":                 "image/png",
		"IMAGE/PNG":                 "image/png",
		"text/plain; charset=utf-8": "text/plain",
		"application/vnd.api+json":  "application/vnd.api+json",
		"":                          "",
		"image":                     "",
		"image/":                    "",
		"/png":                      "",
		"image/*":                   "",
		"image/png;;;":              "",
		"ima ge/png":                "",
		"image/png\x00":             "",
	} {
		got, ok := parseMediaType(in)
		if (want == "") == ok || got != want {
			t.Errorf("parseMediaType(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestKeyExtension(t *testing.T) {
	for _, tc := range []struct {
		typ, filename, want string
		ok                  bool
	}{
		{"image/jpeg", "photo.jpeg", ".jpeg", true},
		{"image/jpeg", "photo.JPG", ".jpg", true},
		{"image/jpeg", "photo", ".jpg", true},
		{"image/jpeg", "photo.png", "", false},      // contradiction
		{"image/png", "evil.php.png", ".png", true}, // only the last extension counts
		{"image/png", "evil.png.html", "", false},
		{"image/png", "weird.ext-with-dash", ".png", true},  // not an extension: canonical one
		{"application/pdf", "doc.unknownext", ".pdf", true}, // unknown extension does not contradict
		{"application/x-unheard-of", "file.bin", "", false},
		{"application/x-unheard-of", "file.qqq", "", true},
	} {
		got, ok := keyExtension(tc.typ, fileExtension(tc.filename))
		if got != tc.want || ok != tc.ok {
			t.Errorf("keyExtension(%q, %q) = %q, %v; want %q, %v", tc.typ, tc.filename, got, ok, tc.want, tc.ok)
		}
	}
}

func TestTypeMatcher(t *testing.T) {
	m := newTypeMatcher([]string{"image/*", "application/pdf"})
	for typ, want := range map[string]bool{
		"image/png":       true,
		"image/svg+xml":   true,
		"application/pdf": true,
		"application/zip": false,
		"imagex/png":      false,
		"text/plain":      false,
	} {
		if got := m.allows(typ); got != want {
			t.Errorf("allows(%q) = %v, want %v", typ, got, want)
		}
	}
	if !newTypeMatcher(nil).allows("anything/at-all") {
		t.Error("an empty list must allow every type")
	}
	for p, want := range map[string]bool{"image/*": true, "*/*": true, "image/png": true, "image/png; q=1": false, "image": false, "*/png": false} {
		if got := validTypePattern(p); got != want {
			t.Errorf("validTypePattern(%q) = %v, want %v", p, got, want)
		}
	}
}
