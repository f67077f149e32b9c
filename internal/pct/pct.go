// Package pct percent-encodes strings: every byte outside a set of safe
// bytes becomes %XX with upper-case hex digits. URL paths, SigV4's
// canonical forms, RFC 8187 header values and object keys each keep a
// different set; the encoding is the same.
package pct

import "strings"

// Set is the bytes left as they are.
type Set [256]bool

// Unreserved is RFC 3986's unreserved set (ALPHA DIGIT - . _ ~) plus extra.
func Unreserved(extra string) *Set {
	return Alnum("-._~" + extra)
}

// Alnum is ALPHA and DIGIT plus extra.
func Alnum(extra string) *Set {
	var s Set
	for c := '0'; c <= '9'; c++ {
		s[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		s[c] = true
		s[c-'a'+'A'] = true
	}
	for i := 0; i < len(extra); i++ {
		s[extra[i]] = true
	}
	return &s
}

const hexDigits = "0123456789ABCDEF"

// Append appends v to b, encoding every byte outside s.
func (s *Set) Append(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if s[c] {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
	}
	return b
}

// Escape returns v encoded; v itself when nothing needs encoding.
func (s *Set) Escape(v string) string {
	n := 0
	for i := 0; i < len(v); i++ {
		if !s[v[i]] {
			n++
		}
	}
	if n == 0 {
		return v
	}
	var b strings.Builder
	b.Grow(len(v) + 2*n)
	b.Write(s.Append(make([]byte, 0, len(v)+2*n), v))
	return b.String()
}
