package s3store

import "testing"

func TestEscapeKey(t *testing.T) {
	for in, want := range map[string]string{
		"plain/key-1_2.3~4":  "plain/key-1_2.3~4",
		"a b+c=d&e?f#g":      "a%20b%2Bc%3Dd%26e%3Ff%23g",
		"100%/x":             "100%25/x",
		"ünï":                "%C3%BCn%C3%AF",
		"dir//file":          "dir//file",
		"semi;colon:at@$!*'": "semi%3Bcolon%3Aat%40%24%21%2A%27",
	} {
		if got := escapeKey(in); got != want {
			t.Errorf("escapeKey(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestCheckKey(t *testing.T) {
	for _, ok := range []string{"a", "a/b.png", "a/.hidden", "..a/b..", "a..b"} {
		if err := checkKey(ok); err != nil {
			t.Errorf("checkKey(%q) = %v; want ok", ok, err)
		}
	}
	long := make([]byte, 1025)
	for i := range long {
		long[i] = 'a'
	}
	for _, bad := range []string{"", "/abs", "a/../b", "a/./b", "..", "a/.", string(long)} {
		if err := checkKey(bad); err == nil {
			t.Errorf("checkKey(%q) = nil; want an error", bad)
		}
	}
}
