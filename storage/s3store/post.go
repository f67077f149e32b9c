package s3store

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyupload/caddyupload/internal/jsonw"
	"github.com/caddyupload/caddyupload/storage"
)

const (
	sigAlgorithm = "AWS4-HMAC-SHA256"
	amzDate      = "20060102T150405Z"
	policyExpiry = "2006-01-02T15:04:05.000Z"
)

// PresignPost writes and signs a POST policy: the exact key, the size range
// and the Content-Type (exact, or a prefix) are conditions the server checks
// against the form. Fields holds every form field to send before the file
// field, which must come last. With a ContentTypePrefix, Fields has no
// Content-Type: the client adds the file's own type (the server checks it
// starts with the prefix).
//
// The policy is written by appendPolicy into a pooled buffer and signed
// with the day's cached key; every new value of the answer (URL, policy,
// credential, date, signature) is a slice of one string, so a call costs a
// few allocations whatever the input.
func (s *Store) PresignPost(ctx context.Context, in storage.PostInput, origin storage.Origin) (storage.SignedRequest, error) {
	if s.disablePost {
		return storage.SignedRequest{}, errors.New("s3: POST policy uploads are disabled for this bucket")
	}
	if err := checkKey(in.Key); err != nil {
		return storage.SignedRequest{}, err
	}
	if in.MinSize < 0 || in.MaxSize <= 0 || in.MinSize > in.MaxSize || in.MaxSize > maxPartSize {
		return storage.SignedRequest{}, fmt.Errorf("s3: post size range %d..%d invalid", in.MinSize, in.MaxSize)
	}
	ttl, err := checkTTL(in.TTL)
	if err != nil {
		return storage.SignedRequest{}, err
	}
	creds, err := s.creds.Retrieve(ctx)
	if err != nil {
		return storage.SignedRequest{}, fmt.Errorf("s3: credentials: %w: %v", storage.ErrUnavailable, err)
	}
	t := now().UTC().Truncate(time.Second)
	exp := t.Add(ttl)
	var dateBuf [len(amzDate)]byte
	date := appendTime(dateBuf[:0], t, false)
	day := date[:8]

	p := policyInput{
		bucket: s.bucket, key: in.Key, minSize: in.MinSize, maxSize: in.MaxSize,
		typeEq: in.ContentType != "", typeValue: in.ContentTypePrefix,
		accessKey: creds.AccessKeyID, day: day, region: s.region, date: date, token: creds.SessionToken,
		expiration: exp,
	}
	if p.typeEq {
		p.typeValue = in.ContentType
	}

	bp := sigBufs.Get().(*[]byte)
	defer sigBufs.Put(bp)
	doc := appendPolicy((*bp)[:0], &p)

	// The base64 policy follows the document in the same buffer; the MAC's
	// sum goes after it.
	docEnd := len(doc)
	buf := base64.StdEncoding.AppendEncode(doc, doc)
	policy := buf[docEnd:]
	k := keyFor(day, s.region, creds.SecretAccessKey)
	mac := k.get()
	mac.Write(policy)
	buf = mac.Sum(buf)
	k.put(mac)
	var sig [2 * sha256.Size]byte
	hex.Encode(sig[:], buf[len(buf)-sha256.Size:])
	if cap(buf) <= 64<<10 {
		*bp = buf[:0]
	}

	// One string holds the URL (bucketURL's), the policy, the credential,
	// the date and the signature; the fields are slices of it.
	tg := s.targetFor(origin)
	urlLen := len(tg.scheme) + len("://") + len(tg.host) + max(len(tg.bucketPath), 1)
	credLen := len(creds.AccessKeyID) + 1 + len(day) + 1 + len(s.region) + len("/s3/aws4_request")
	var out strings.Builder
	out.Grow(urlLen + len(policy) + credLen + len(date) + len(sig))
	out.WriteString(tg.scheme)
	out.WriteString("://")
	out.WriteString(tg.host)
	if tg.bucketPath == "" {
		out.WriteByte('/')
	} else {
		out.WriteString(tg.bucketPath)
	}
	out.Write(policy)
	out.WriteString(creds.AccessKeyID)
	out.WriteByte('/')
	out.Write(day)
	out.WriteByte('/')
	out.WriteString(s.region)
	out.WriteString("/s3/aws4_request")
	out.Write(date)
	out.Write(sig[:])
	all := out.String()
	cut := func(n int) string {
		v := all[:n]
		all = all[n:]
		return v
	}

	fields := make(map[string]string, 8)
	u := cut(urlLen)
	fields["key"] = in.Key
	fields["policy"] = cut(len(policy))
	fields["x-amz-algorithm"] = sigAlgorithm
	fields["x-amz-credential"] = cut(credLen)
	fields["x-amz-date"] = cut(len(date))
	fields["x-amz-signature"] = cut(len(sig))
	if in.ContentType != "" {
		fields["Content-Type"] = in.ContentType
	}
	if creds.SessionToken != "" {
		fields["x-amz-security-token"] = creds.SessionToken
	}
	return storage.SignedRequest{
		Method:  http.MethodPost,
		URL:     u,
		Fields:  fields,
		Expires: exp,
	}, nil
}

// policyInput is what a POST policy says. Its layout is fixed: the same
// input gives the same document, byte for byte.
type policyInput struct {
	bucket, key      string
	minSize, maxSize int64
	typeEq           bool   // "eq" on Content-Type; "starts-with" otherwise
	typeValue        string // the type, or its prefix
	accessKey        string
	day, date        []byte // yyyymmdd, and the x-amz-date
	region, token    string // token "" = no session token
	expiration       time.Time
}

// appendPolicy appends the policy document of p to b:
//
//	{"expiration":"…","conditions":[{"bucket":"…"},["eq","$key","…"],
//	 ["content-length-range",min,max],["eq"|"starts-with","$Content-Type","…"],
//	 {"x-amz-algorithm":"…"},{"x-amz-credential":"…"},{"x-amz-date":"…"}
//	 [,{"x-amz-security-token":"…"}]]}
//
// Strings are escaped as encoding/json escapes them, so the document is
// the one json.Marshal gave for the same conditions.
func appendPolicy(b []byte, p *policyInput) []byte {
	b = append(b, `{"expiration":"`...)
	b = appendTime(b, p.expiration, true)
	b = append(b, `","conditions":[{"bucket":`...)
	b = jsonw.AppendString(b, p.bucket)
	b = append(b, `},["eq","$key",`...)
	b = jsonw.AppendString(b, p.key)
	b = append(b, `],["content-length-range",`...)
	b = strconv.AppendInt(b, p.minSize, 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, p.maxSize, 10)
	if p.typeEq {
		b = append(b, `],["eq","$Content-Type",`...)
	} else {
		b = append(b, `],["starts-with","$Content-Type",`...)
	}
	b = jsonw.AppendString(b, p.typeValue)
	b = append(b, `],{"x-amz-algorithm":"`+sigAlgorithm+`"},{"x-amz-credential":`...)
	// The credential is one JSON string of several parts: each is escaped
	// on its own, which is the same as escaping the whole.
	b = append(b, '"')
	b = jsonw.AppendChars(b, p.accessKey)
	b = append(b, '/')
	b = append(b, p.day...)
	b = append(b, '/')
	b = jsonw.AppendChars(b, p.region)
	b = append(b, `/s3/aws4_request"},{"x-amz-date":"`...)
	b = append(b, p.date...)
	b = append(b, `"}`...)
	if p.token != "" {
		b = append(b, `,{"x-amz-security-token":`...)
		b = jsonw.AppendString(b, p.token)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// appendTime appends t (UTC, whole seconds) in the layout amzDate, or
// policyExpiry when iso; digits are written directly since the layout
// interpreter of time.Format costs more than the rest of the document.
func appendTime(b []byte, t time.Time, iso bool) []byte {
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		if iso {
			return t.AppendFormat(b, policyExpiry)
		}
		return t.AppendFormat(b, amzDate)
	}
	hour, minute, sec := t.Clock()
	b = append(b, byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10))
	if iso {
		b = append(b, '-')
	}
	b = append(b, byte('0'+month/10), byte('0'+month%10))
	if iso {
		b = append(b, '-')
	}
	b = append(b, byte('0'+day/10), byte('0'+day%10), 'T', byte('0'+hour/10), byte('0'+hour%10))
	if iso {
		b = append(b, ':')
	}
	b = append(b, byte('0'+minute/10), byte('0'+minute%10))
	if iso {
		b = append(b, ':')
	}
	b = append(b, byte('0'+sec/10), byte('0'+sec%10))
	if iso {
		b = append(b, ".000"...)
	}
	return append(b, 'Z')
}

// PolicySignature is the SigV4 signature of a POST policy (its base64
// form) signed on day (yyyymmdd) for S3 in region: what PresignPost puts
// in x-amz-signature, and what a server that verifies forms recomputes.
func PolicySignature(secret, day, region, policy string) []byte {
	return hmacSHA256(signingKey(secret, day, region, "s3"), []byte(policy))
}

// signingKey is the SigV4 key for one day, region and service.
func signingKey(secret, day, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), []byte(day))
	k = hmacSHA256(k, []byte(region))
	k = hmacSHA256(k, []byte(service))
	return hmacSHA256(k, []byte("aws4_request"))
}

func hmacSHA256(key, data []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(data)
	return h.Sum(nil)
}
