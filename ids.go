package caddyupload

import (
	"crypto/rand"
	"encoding/base32"
)

// idEncoding is lowercase base32 without padding: URL- and key-safe.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

const idBytes = 20 // 160 random bits, 32 characters

// newID returns an opaque, unguessable upload id.
func newID() string {
	var b [idBytes]byte
	_, _ = rand.Read(b[:]) // never fails since Go 1.24
	return idEncoding.EncodeToString(b[:])
}

// validID reports whether s has the shape of an id this module issues, so
// that anything else is answered 404 without a ledger read.
func validID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}
