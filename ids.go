package caddyupload

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"time"
)

// idEncoding is base32 without padding in an alphabet whose ASCII order is
// its value order, so ids sort like the bytes they encode. URL- and
// key-safe.
var idEncoding = base32.NewEncoding("234567abcdefghijklmnopqrstuvwxyz").WithPadding(base32.NoPadding)

const (
	idTimeBytes   = 6  // milliseconds since the epoch, big-endian
	idRandomBytes = 20 // 160 random bits: what makes an id unguessable
	idLen         = 42 // base32 of 26 bytes
)

// newID returns an opaque, unguessable upload id. It starts with the time
// so that consecutive ids are neighbours in the ledger's B-tree: random
// ids would put every insert on another page (measured: ~3.5× the write
// cost on a large ledger). The price is that an id shows when it was made.
func newID() string {
	var b [idTimeBytes + idRandomBytes]byte
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(time.Now().UnixMilli()))
	copy(b[:idTimeBytes], ms[8-idTimeBytes:])
	_, _ = rand.Read(b[idTimeBytes:]) // never fails since Go 1.24
	return idEncoding.EncodeToString(b[:])
}

// validID reports whether s has the shape of an id this module issues, so
// that anything else is answered 404 without a ledger read.
func validID(s string) bool {
	if len(s) != idLen {
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
