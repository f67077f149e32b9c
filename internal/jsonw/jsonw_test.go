package jsonw

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzJSONChars: AppendString escapes any string as encoding/json does.
// The seeds run as a test; `go test -fuzz FuzzJSONChars` explores.
func FuzzJSONChars(f *testing.F) {
	for c := range 256 {
		f.Add(string([]byte{byte(c)}))
		f.Add("a" + string([]byte{byte(c)}) + "b")
	}
	for _, s := range []string{"", "plain", `"\`, "\u2028\u2029", "日本🙂", "\xe2\x80\xa8", "\xe2\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "<>&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendString([]byte("x"), s); string(got[1:]) != string(want) {
			t.Fatalf("%q: got %s; want %s", s, got[1:], want)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		want = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		if got := AppendStringNoHTML([]byte("x"), s); string(got[1:]) != string(want) {
			t.Fatalf("%q without HTML escaping: got %s; want %s", s, got[1:], want)
		}
	})
}
