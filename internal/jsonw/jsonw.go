// Package jsonw appends JSON without reflection, for the few documents
// written on every request (a POST policy, an upload's answer, a stored
// record), byte for byte as encoding/json writes them.
package jsonw

import (
	"slices"
	"time"
	"unicode/utf8"
)

// AppendString appends s as a quoted JSON string, as json.Marshal does.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendChars(b, s, &jsonSafe)
	return append(b, '"')
}

// AppendStringNoHTML appends s as a quoted JSON string, as a json.Encoder
// with SetEscapeHTML(false) does: <, > and & as they are.
func AppendStringNoHTML(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendChars(b, s, &jsonSafeNoHTML)
	return append(b, '"')
}

// jsonSafe marks the ASCII bytes encoding/json (with HTML escaping, its
// default) writes as they are.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()

var jsonSafeNoHTML = func() (t [utf8.RuneSelf]bool) {
	t = jsonSafe
	for _, c := range `<>&` {
		t[c] = true
	}
	return t
}()

// AppendChars appends the JSON escape of s, without quotes, exactly as
// encoding/json writes it: `"` and `\` escaped, control bytes as \b \f \n
// \r \t or \u00XX, <, > and & as \u003c \u003e \u0026, U+2028 and U+2029 as
// \u2028 \u2029, and each byte of invalid UTF-8 as \ufffd. Strings written
// so can hold anything a caller sent: none ends early or smuggles a field.
func AppendChars(b []byte, s string) []byte { return appendChars(b, s, &jsonSafe) }

func appendChars(b []byte, s string, safe *[utf8.RuneSelf]bool) []byte {
	const hexDigits = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if safe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}

// AppendTime appends t as time.Time's MarshalJSON does, for years 0–9999
// (what MarshalJSON refuses, callers never hold).
func AppendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// AppendStringMapNoHTML appends m as encoding/json does without HTML
// escaping: keys in sorted order.
func AppendStringMapNoHTML(b []byte, m map[string]string) []byte {
	var small [8]string
	keys := small[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendStringNoHTML(b, k)
		b = append(b, ':')
		b = AppendStringNoHTML(b, m[k])
	}
	return append(b, '}')
}
