package pct

import (
	"net/url"
	"testing"
)

func TestEscape(t *testing.T) {
	u := Unreserved("")
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"abc-._~XYZ019", "abc-._~XYZ019"},
		{"a b/c", "a%20b%2Fc"},
		{"é", "%C3%A9"},
		{"\x00\xff", "%00%FF"},
	} {
		if got := u.Escape(c.in); got != c.want {
			t.Errorf("Escape(%q) = %q, want %q", c.in, got, c.want)
		}
		if back, err := url.PathUnescape(u.Escape(c.in)); err != nil || back != c.in {
			t.Errorf("%q does not round-trip: %q %v", c.in, back, err)
		}
	}
	if got := Unreserved("/").Escape("a/b c"); got != "a/b%20c" {
		t.Errorf("extra bytes: %q", got)
	}
	if got := Alnum("").Escape("a.b"); got != "a%2Eb" {
		t.Errorf("Alnum keeps only letters and digits: %q", got)
	}
}
