package s3store

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A hand-written SigV4 query presigner for the three requests this package
// signs. It produces the same URL, byte for byte, as the SDK's
// v4.Signer.PresignHTTP with DisableURIPathEscaping (TestPresignMatchesSDK
// checks it), without cloning a request, parsing and re-encoding its query,
// or deriving the signing key on every call.

// sigInput is one request to presign. The query parameters are the ones the
// caller adds beside X-Amz-Expires, as decoded values.
type sigInput struct {
	method      string
	t           target
	key         string
	ttl         time.Duration
	length      int64  // > 0: signed as content-length
	contentType string // "" = not signed
	checksum    string // base64 x-amz-checksum-sha256; "" = none
	ifNoneMatch bool   // signs If-None-Match: * (create only)
	partNumber  int32  // > 0: partNumber and uploadId are in the query
	uploadID    string
	respCache   string // response-cache-control; "" = absent
	respDisp    string // response-content-disposition; "" = absent
	respType    string // response-content-type; "" = absent
}

// sigBufs are reused across signatures: the canonical request is hashed and
// then discarded, so only the URL itself needs a new allocation.
var sigBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// presignURL returns the presigned URL for in, signed at t (whole seconds,
// UTC) with the given credentials.
func (s *Store) presignURL(in *sigInput, t time.Time, accessKey, secret, token string) string {
	var dateBuf [16]byte
	date := t.AppendFormat(dateBuf[:0], amzDate)
	day := date[:8]

	bp := sigBufs.Get().(*[]byte)
	defer sigBufs.Put(bp)

	// The signed query, in canonical (sorted) order; it is also the URL's
	// query, to which the signature is appended.
	q := (*bp)[:0]
	q = append(q, "X-Amz-Algorithm="+sigAlgorithm+"&X-Amz-Credential="...)
	q = queryChars.Append(q, accessKey)
	q = append(q, "%2F"...)
	q = append(q, day...)
	q = append(q, "%2F"...)
	q = queryChars.Append(q, s.region)
	q = append(q, "%2Fs3%2Faws4_request&X-Amz-Date="...)
	q = append(q, date...)
	q = append(q, "&X-Amz-Expires="...)
	q = strconv.AppendInt(q, int64(in.ttl/time.Second), 10)
	if token != "" {
		q = append(q, "&X-Amz-Security-Token="...)
		q = queryChars.Append(q, token)
	}
	q = append(q, "&X-Amz-SignedHeaders="...)
	q = appendSignedHeaders(q, in, "%3B")
	if in.partNumber > 0 {
		q = append(q, "&partNumber="...)
		q = strconv.AppendInt(q, int64(in.partNumber), 10)
	}
	if in.respCache != "" {
		q = append(q, "&response-cache-control="...)
		q = queryChars.Append(q, in.respCache)
	}
	if in.respDisp != "" {
		q = append(q, "&response-content-disposition="...)
		q = queryChars.Append(q, in.respDisp)
	}
	if in.respType != "" {
		q = append(q, "&response-content-type="...)
		q = queryChars.Append(q, in.respType)
	}
	if in.partNumber > 0 {
		q = append(q, "&uploadId="...)
		q = queryChars.Append(q, in.uploadID)
	}
	qEnd := len(q)

	// The URL before the query: scheme ":" opaque, as net/url prints it.
	// The canonical URI is read out of the opaque part as the SDK does.
	opaque := len(q)
	q = append(q, "//"...)
	q = append(q, in.t.host...)
	q = append(q, in.t.bucketPath...)
	q = append(q, '/')
	q = keyChars.Append(q, in.key)
	opaqueEnd := len(q)
	uri := uriPath(q[opaque:opaqueEnd])

	// The canonical request, hashed.
	c := q[opaqueEnd:]
	c = append(c, in.method...)
	c = append(c, '\n')
	c = append(c, uri...)
	c = append(c, '\n')
	c = append(c, q[:qEnd]...)
	c = append(c, '\n')
	if in.length > 0 {
		c = append(c, "content-length:"...)
		c = strconv.AppendInt(c, in.length, 10)
		c = append(c, '\n')
	}
	if in.contentType != "" {
		c = append(c, "content-type:"...)
		c = append(c, strings.TrimSpace(stripExcessSpaces(in.contentType))...)
		c = append(c, '\n')
	}
	c = append(c, "host:"...)
	c = append(c, stripExcessSpaces(signingHost(in.t.scheme, in.t.host))...)
	c = append(c, '\n')
	if in.ifNoneMatch {
		c = append(c, "if-none-match:*\n"...)
	}
	if in.checksum != "" {
		c = append(c, "x-amz-checksum-sha256:"...)
		c = append(c, strings.TrimSpace(stripExcessSpaces(in.checksum))...)
		c = append(c, '\n')
	}
	c = append(c, '\n')
	c = appendSignedHeaders(c, in, ";")
	c = append(c, "\n"+unsignedPayload...)
	sum := sha256.Sum256(c)

	// The string to sign reuses the canonical request's room.
	var hexSum [2 * sha256.Size]byte
	hex.Encode(hexSum[:], sum[:])
	sts := c[:0]
	sts = append(sts, sigAlgorithm+"\n"...)
	sts = append(sts, date...)
	sts = append(sts, '\n')
	sts = append(sts, day...)
	sts = append(sts, '/')
	sts = append(sts, s.region...)
	sts = append(sts, "/s3/aws4_request\n"...)
	sts = append(sts, hexSum[:]...)
	k := keyFor(day, s.region, secret)
	mac := k.get()
	mac.Write(sts)
	full := mac.Sum(sts)
	sig := full[len(sts):]
	k.put(mac)
	var hexSig [2 * sha256.Size]byte
	hex.Encode(hexSig[:], sig)

	const sigParam = "&X-Amz-Signature="
	var out strings.Builder
	out.Grow(len(in.t.scheme) + 1 + (opaqueEnd - opaque) + 1 + qEnd + len(sigParam) + len(hexSig))
	out.WriteString(in.t.scheme)
	out.WriteByte(':')
	out.Write(q[opaque:opaqueEnd])
	out.WriteByte('?')
	out.Write(q[:qEnd])
	out.WriteString(sigParam)
	out.Write(hexSig[:])

	// Keep the backing array for the next signature: q's, or the larger
	// one the canonical request grew into, unless an outlier made it huge.
	if cap(full) > cap(q)-opaqueEnd {
		q = full
	}
	if cap(q) <= 64<<10 {
		*bp = q[:0]
	}
	return out.String()
}

// appendSignedHeaders appends the signed header names, sorted, joined by
// sep (";" in the canonical request, its escaped form in the query).
func appendSignedHeaders(b []byte, in *sigInput, sep string) []byte {
	if in.length > 0 {
		b = append(b, "content-length"...)
		b = append(b, sep...)
	}
	if in.contentType != "" {
		b = append(b, "content-type"...)
		b = append(b, sep...)
	}
	b = append(b, "host"...)
	if in.ifNoneMatch {
		b = append(b, sep...)
		b = append(b, "if-none-match"...)
	}
	if in.checksum != "" {
		b = append(b, sep...)
		b = append(b, "x-amz-checksum-sha256"...)
	}
	return b
}

// uriPath is the canonical URI the SDK reads from a URL's opaque part:
// after the leading "//", from the first '/' up to any '?'.
func uriPath(opaque []byte) []byte {
	if i := indexByte(opaque, '?'); i >= 0 {
		opaque = opaque[:i]
	}
	if len(opaque) >= 2 && opaque[0] == '/' && opaque[1] == '/' {
		opaque = opaque[2:]
	}
	if i := indexByte(opaque, '/'); i >= 0 {
		return opaque[i:]
	}
	return []byte{'/'}
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// signingHost is the host header value that is signed: a port that is the
// scheme's default is dropped, since clients do not send it.
func signingHost(scheme, host string) string {
	colon := strings.IndexByte(host, ':')
	if colon < 0 {
		return host
	}
	var port string
	if i := strings.Index(host, "]:"); i >= 0 {
		port = host[i+2:]
	} else if !strings.Contains(host, "]") {
		port = host[colon+1:]
	}
	if port == "" {
		return host
	}
	if !(strings.EqualFold(scheme, "http") && port == "80" || strings.EqualFold(scheme, "https") && port == "443") {
		return host
	}
	if i := strings.IndexByte(host, ']'); i >= 0 {
		return strings.TrimPrefix(host[:i], "[")
	}
	return host[:colon]
}

// stripExcessSpaces trims spaces at both ends and folds runs of spaces into
// one, as SigV4 canonical header values require.
func stripExcessSpaces(str string) string {
	var j, k int
	for j = len(str) - 1; j >= 0 && str[j] == ' '; j-- {
	}
	for k = 0; k < j && str[k] == ' '; k++ {
	}
	str = str[k : j+1]
	j = strings.Index(str, "  ")
	if j < 0 {
		return str
	}
	buf := []byte(str)
	m, spaces := j, 0
	for k = j; k < len(buf); k++ {
		if buf[k] == ' ' {
			if spaces == 0 {
				buf[m] = buf[k]
				m++
			}
			spaces++
		} else {
			spaces = 0
			buf[m] = buf[k]
			m++
		}
	}
	return string(buf[:m])
}

// derivedKey is the signing key of one (day, region, secret), with a pool of
// HMACs keyed by it: Reset restores a keyed HMAC, so its setup is paid once.
type derivedKey struct {
	macs sync.Pool
}

func (k *derivedKey) get() hash.Hash  { return k.macs.Get().(hash.Hash) }
func (k *derivedKey) put(h hash.Hash) { h.Reset(); k.macs.Put(h) }

type keyID struct{ day, region, secret string }

// keyCache holds the signing keys of the current day. A day's keys are
// useless the next day, so the cache is emptied when the day changes; the
// size cap bounds it when credentials rotate often.
var keyCache struct {
	mu   sync.RWMutex
	day  string
	keys map[keyID]*derivedKey
}

const maxCachedKeys = 32

func keyFor(day []byte, region, secret string) *derivedKey {
	keyCache.mu.RLock()
	var k *derivedKey
	if keyCache.day == string(day) {
		k = keyCache.keys[keyID{keyCache.day, region, secret}]
	}
	keyCache.mu.RUnlock()
	if k != nil {
		return k
	}
	id := keyID{string(day), region, secret}
	sk := signingKey(secret, id.day, region, "s3")
	k = &derivedKey{macs: sync.Pool{New: func() any { return hmac.New(sha256.New, sk) }}}
	keyCache.mu.Lock()
	defer keyCache.mu.Unlock()
	if old := keyCache.keys[id]; old != nil {
		return old
	}
	if keyCache.keys == nil || keyCache.day != id.day || len(keyCache.keys) >= maxCachedKeys {
		keyCache.keys = make(map[keyID]*derivedKey)
		keyCache.day = id.day
	}
	keyCache.keys[id] = k
	return k
}
