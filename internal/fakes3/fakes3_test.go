package fakes3_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/caddyupload/caddyupload/internal/fakes3"
	"github.com/caddyupload/caddyupload/storage"
	"github.com/caddyupload/caddyupload/storage/s3store"
)

// env is a fake on its own httptest server with a bucket, a store on it
// and a clock the test can move.
type env struct {
	t      *testing.T
	fake   *fakes3.Server
	url    string
	bucket string
	store  *s3store.Store
	skew   atomic.Int64 // added to the fake's clock, in nanoseconds
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, bucket: "bucket-" + randomHex(t, 4)}
	e.fake = fakes3.New(fakes3.Options{Now: func() time.Time { return time.Now().Add(time.Duration(e.skew.Load())) }})
	ts := httptest.NewServer(e.fake)
	t.Cleanup(ts.Close)
	e.url = ts.URL
	e.store = e.storeWith(nil)
	if err := e.store.EnsureBucket(context.Background()); err != nil {
		t.Fatalf("EnsureBucket: %v", err)
	}
	return e
}

// storeWith is a store on the env's bucket; edit changes its config (to
// sign with wrong credentials, say).
func (e *env) storeWith(edit func(*s3store.Config)) *s3store.Store {
	e.t.Helper()
	cfg := s3store.Config{Endpoint: e.url, Bucket: e.bucket, AccessKeyID: e.fake.AccessKey,
		SecretAccessKey: e.fake.SecretKey, UsePathStyle: true}
	if edit != nil {
		edit(&cfg)
	}
	s, err := s3store.New(context.Background(), cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// client is an SDK client; creds nil means the fake's own.
func (e *env) client(creds aws.CredentialsProvider) *s3.Client {
	if creds == nil {
		creds = credentials.NewStaticCredentialsProvider(e.fake.AccessKey, e.fake.SecretKey, "")
	}
	return s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(e.url), UsePathStyle: true, Credentials: creds,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// answer is a response with the S3 error code of its body, if any.
type answer struct {
	status int
	code   string
	msg    string
	header http.Header
	body   []byte
}

func (a answer) String() string { return fmt.Sprintf("%d %s %s", a.status, a.code, a.msg) }

func do(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", req.Method, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, body: body}
	var doc struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	if resp.StatusCode >= 300 && xml.Unmarshal(body, &doc) == nil {
		a.code, a.msg = doc.Code, doc.Message
	}
	return a
}

// send sends a presigned request with its headers, edited by edit.
func send(t *testing.T, sr storage.SignedRequest, body []byte, edit func(*http.Request)) answer {
	t.Helper()
	req, err := http.NewRequest(sr.Method, sr.URL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range sr.Headers {
		if k != "Content-Length" {
			req.Header.Set(k, v)
		}
	}
	if edit != nil {
		edit(req)
	}
	return do(t, req)
}

func (e *env) presignPut(in storage.PutInput) storage.SignedRequest {
	e.t.Helper()
	sr, err := e.store.PresignPut(context.Background(), in, storage.Origin{})
	if err != nil {
		e.t.Fatal(err)
	}
	return sr
}

// exists asks the fake, through a signed HEAD, whether key is stored.
func (e *env) exists(key string) bool {
	e.t.Helper()
	_, err := e.store.Head(context.Background(), key)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		e.t.Fatalf("Head(%s): %v", key, err)
	}
	return err == nil
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func randomHex(t *testing.T, n int) string { return hex.EncodeToString(randomBytes(t, n)) }

// TestPresignedPut: a presigned PUT succeeds exactly as signed, and every
// departure from it — length ±1, type, signature, key, host, query,
// credentials, region, expiry — is refused with S3's code and stores
// nothing.
func TestPresignedPut(t *testing.T) {
	e := newEnv(t)
	const n = 1000
	body := randomBytes(t, n)
	in := func(key string) storage.PutInput {
		return storage.PutInput{Key: key, Size: n, ContentType: "image/png", TTL: time.Minute}
	}
	flipSig := func(r *http.Request) {
		q := r.URL.Query()
		sig := []byte(q.Get("X-Amz-Signature"))
		sig[len(sig)-1] = map[bool]byte{true: '0', false: '1'}[sig[len(sig)-1] != '0']
		q.Set("X-Amz-Signature", string(sig))
		r.URL.RawQuery = q.Encode()
	}
	cases := []struct {
		name   string
		store  *s3store.Store // nil: the right one
		body   []byte
		edit   func(*http.Request)
		status int
		code   string
	}{
		{name: "N-1 bytes", body: body[:n-1], status: 403, code: "SignatureDoesNotMatch"},
		{name: "N+1 bytes", body: append(bytes.Clone(body), 'x'), status: 403, code: "SignatureDoesNotMatch"},
		{name: "another type", edit: func(r *http.Request) { r.Header.Set("Content-Type", "text/html") }, status: 403, code: "SignatureDoesNotMatch"},
		{name: "no type", edit: func(r *http.Request) { r.Header.Del("Content-Type") }, status: 403, code: "SignatureDoesNotMatch"},
		{name: "tampered signature", edit: flipSig, status: 403, code: "SignatureDoesNotMatch"},
		{name: "another key", edit: func(r *http.Request) { r.URL.Path += "x"; r.URL.RawPath = "" }, status: 403, code: "SignatureDoesNotMatch"},
		{name: "another host", edit: func(r *http.Request) { r.Host = strings.Replace(r.URL.Host, "127.0.0.1", "localhost", 1) }, status: 403, code: "SignatureDoesNotMatch"},
		{name: "added query", edit: func(r *http.Request) { r.URL.RawQuery += "&response-content-type=text%2Fhtml" }, status: 403, code: "SignatureDoesNotMatch"},
		{name: "other secret", store: e.storeWith(func(c *s3store.Config) { c.SecretAccessKey += "x" }), status: 403, code: "SignatureDoesNotMatch"},
		{name: "other access key", store: e.storeWith(func(c *s3store.Config) { c.AccessKeyID = "AKOTHER" }), status: 403, code: "InvalidAccessKeyId"},
		{name: "other region", store: e.storeWith(func(c *s3store.Config) { c.Region = "eu-west-1" }), status: 400, code: "AuthorizationQueryParametersError"},
		{name: "no signature", edit: func(r *http.Request) {
			q := r.URL.Query()
			q.Del("X-Amz-Signature")
			r.URL.RawQuery = q.Encode()
		}, status: 400, code: "AuthorizationQueryParametersError"},
		{name: "anonymous", edit: func(r *http.Request) { r.URL.RawQuery = "" }, status: 403, code: "AccessDenied"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			key := fmt.Sprintf("put/%d.png", i)
			s := c.store
			if s == nil {
				s = e.store
			}
			sr, err := s.PresignPut(context.Background(), in(key), storage.Origin{})
			if err != nil {
				t.Fatal(err)
			}
			b := c.body
			if b == nil {
				b = body
			}
			if a := send(t, sr, b, c.edit); a.status != c.status || a.code != c.code {
				t.Fatalf("refused request: %s; want %d %s", a, c.status, c.code)
			}
			if e.exists(key) {
				t.Fatal("a refused PUT stored the object")
			}
			// Positive control: the request as signed, by the right store.
			a := send(t, e.presignPut(in(key)), body, nil)
			sum := md5.Sum(body)
			if a.status != 200 || a.header.Get("ETag") != `"`+hex.EncodeToString(sum[:])+`"` {
				t.Fatalf("PUT as signed: %s, ETag %q; want 200 and the quoted MD5", a, a.header.Get("ETag"))
			}
			info, err := e.store.Head(context.Background(), key)
			if err != nil || info.Size != n || info.ContentType != "image/png" {
				t.Fatalf("Head = %+v, %v", info, err)
			}
		})
	}
}

// TestPresignedPutExpiry: a URL works until its expiry and not after.
func TestPresignedPutExpiry(t *testing.T) {
	e := newEnv(t)
	sr := e.presignPut(storage.PutInput{Key: "exp.txt", Size: 3, ContentType: "text/plain", TTL: time.Minute})
	e.skew.Store(int64(61 * time.Second))
	if a := send(t, sr, []byte("abc"), nil); a.status != 403 || a.code != "AccessDenied" || !strings.Contains(a.msg, "expired") {
		t.Fatalf("PUT after expiry: %s; want 403 AccessDenied (expired)", a)
	}
	if e.exists("exp.txt") {
		t.Fatal("an expired PUT stored the object")
	}
	e.skew.Store(int64(59 * time.Second))
	if a := send(t, sr, []byte("abc"), nil); a.status != 200 {
		t.Fatalf("PUT before expiry: %s", a)
	}
}

// TestPresignedPutChecksum: a signed SHA-256 refuses other content of the
// same length and type, and cannot be dropped.
func TestPresignedPutChecksum(t *testing.T) {
	e := newEnv(t)
	body := randomBytes(t, 500)
	sum := sha256.Sum256(body)
	in := storage.PutInput{Key: "sum.bin", Size: 500, ContentType: "application/octet-stream", SHA256: sum[:], TTL: time.Minute}
	other := bytes.Clone(body)
	other[7] ^= 1
	if a := send(t, e.presignPut(in), other, nil); a.status != 400 || a.code != "BadDigest" {
		t.Fatalf("other content: %s; want 400 BadDigest", a)
	}
	drop := func(r *http.Request) { r.Header.Del("X-Amz-Checksum-Sha256") }
	if a := send(t, e.presignPut(in), other, drop); a.status != 403 || a.code != "SignatureDoesNotMatch" {
		t.Fatalf("checksum header dropped: %s; want 403 SignatureDoesNotMatch", a)
	}
	if e.exists(in.Key) {
		t.Fatal("a refused PUT stored the object")
	}
	if a := send(t, e.presignPut(in), body, nil); a.status != 200 {
		t.Fatalf("the content the checksum names: %s", a)
	}
	info, err := e.store.Head(context.Background(), in.Key)
	if err != nil || !bytes.Equal(info.SHA256, sum[:]) {
		t.Fatalf("Head = %+v, %v; want the signed SHA-256 kept", info, err)
	}
}

// TestIfNoneMatch: a write with If-None-Match: * succeeds only while the
// key is free; of racing writers exactly one wins.
func TestIfNoneMatch(t *testing.T) {
	e := newEnv(t)
	c := e.client(nil)
	ctx := context.Background()
	put := func(key string, body string) error {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &e.bucket, Key: &key, Body: strings.NewReader(body), IfNoneMatch: aws.String("*")})
		return err
	}
	if err := put("once", "first"); err != nil {
		t.Fatalf("first conditional PUT: %v", err)
	}
	if err := put("once", "second"); apiCode(err) != "PreconditionFailed" {
		t.Fatalf("second conditional PUT: %v; want PreconditionFailed", err)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &e.bucket, Key: aws.String("once")})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(out.Body)
	if string(got) != "first" {
		t.Fatalf("object holds %q; want the first write", got)
	}
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &e.bucket, Key: aws.String("once"), Body: strings.NewReader("third")}); err != nil {
		t.Fatalf("unconditional overwrite: %v", err)
	}

	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			switch err := put("race", strconv.Itoa(i)); {
			case err == nil:
				wins.Add(1)
			case apiCode(err) != "PreconditionFailed":
				t.Errorf("racing PUT: %v", err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d racing conditional PUTs won; want 1", wins.Load())
	}
}

// TestHeaderSigned: SDK calls signed in the Authorization header work with
// the right credentials and fail with S3's codes otherwise; a body that is
// not the one whose hash was signed is refused.
func TestHeaderSigned(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	put := func(c *s3.Client, key string) error {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &e.bucket, Key: &key, Body: strings.NewReader("hello")})
		return err
	}
	if err := put(e.client(nil), "ok"); err != nil {
		t.Fatalf("PutObject with the right credentials: %v", err)
	}
	for _, c := range []struct {
		name  string
		creds aws.CredentialsProvider
		code  string
	}{
		{"wrong secret", credentials.NewStaticCredentialsProvider(e.fake.AccessKey, "wrong", ""), "SignatureDoesNotMatch"},
		{"unknown key", credentials.NewStaticCredentialsProvider("AKUNKNOWN", e.fake.SecretKey, ""), "InvalidAccessKeyId"},
		{"session token", credentials.NewStaticCredentialsProvider(e.fake.AccessKey, e.fake.SecretKey, "tok"), "InvalidToken"},
		{"anonymous", aws.AnonymousCredentials{}, "AccessDenied"},
	} {
		if err := put(e.client(c.creds), "bad-"+c.name); apiCode(err) != c.code {
			t.Errorf("%s: %v; want %s", c.name, err, c.code)
		}
		if e.exists("bad-" + c.name) {
			t.Errorf("%s: a refused PUT stored the object", c.name)
		}
	}

	// A signed payload hash binds the body.
	signed := func(body, sent string, skew time.Duration) answer {
		sum := sha256.Sum256([]byte(body))
		req, _ := http.NewRequest(http.MethodPut, e.url+"/"+e.bucket+"/raw", strings.NewReader(sent))
		req.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
		err := v4.NewSigner().SignHTTP(ctx, aws.Credentials{AccessKeyID: e.fake.AccessKey, SecretAccessKey: e.fake.SecretKey},
			req, hex.EncodeToString(sum[:]), "s3", "us-east-1", time.Now().Add(skew))
		if err != nil {
			t.Fatal(err)
		}
		return do(t, req)
	}
	if a := signed("abc", "abd", 0); a.status != 400 || a.code != "XAmzContentSHA256Mismatch" {
		t.Fatalf("body other than the signed hash: %s; want 400 XAmzContentSHA256Mismatch", a)
	}
	if a := signed("abc", "abc", -20*time.Minute); a.status != 403 || a.code != "RequestTimeTooSkewed" {
		t.Fatalf("request signed 20 minutes ago: %s; want 403 RequestTimeTooSkewed", a)
	}
	if e.exists("raw") {
		t.Fatal("a refused PUT stored the object")
	}
	if a := signed("abc", "abc", 0); a.status != 200 {
		t.Fatalf("body matching the signed hash: %s", a)
	}
}

// TestChecksumHeaders: the x-amz-checksum-* the SDK computes are verified;
// a wrong one is BadDigest.
func TestChecksumHeaders(t *testing.T) {
	e := newEnv(t)
	c := e.client(nil)
	ctx := context.Background()
	for _, alg := range []types.ChecksumAlgorithm{types.ChecksumAlgorithmCrc32, types.ChecksumAlgorithmCrc32c,
		types.ChecksumAlgorithmCrc64nvme, types.ChecksumAlgorithmSha1, types.ChecksumAlgorithmSha256} {
		key := "sum-" + string(alg)
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &e.bucket, Key: &key, Body: bytes.NewReader([]byte("123456789")),
			ChecksumAlgorithm: alg}); err != nil {
			t.Errorf("PutObject with an SDK-computed %s: %v", alg, err)
		}
	}
	in := &s3.PutObjectInput{Bucket: &e.bucket, Key: aws.String("bad-crc"), Body: strings.NewReader("123456789"),
		ChecksumCRC64NVME: aws.String("AAAAAAAAAAA=")}
	if _, err := c.PutObject(ctx, in); apiCode(err) != "BadDigest" {
		t.Fatalf("wrong CRC64NVME: %v; want BadDigest", err)
	}
	in.ChecksumCRC64NVME = aws.String("rosUhgp5mIg=") // CRC-64/NVME of "123456789" is 0xae8b14860a799888
	in.Body = strings.NewReader("123456789")
	if _, err := c.PutObject(ctx, in); err != nil {
		t.Fatalf("right CRC64NVME given by the caller: %v", err)
	}
}

// postForm sends the fields in order and then the file.
func postForm(t *testing.T, target string, fields [][2]string, file []byte) answer {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, f := range fields {
		w.WriteField(f[0], f[1])
	}
	fw, _ := w.CreateFormFile("file", "photo.png")
	fw.Write(file)
	w.Close()
	req, _ := http.NewRequest(http.MethodPost, target, &buf)
	req.Header.Set("Content-Type", w.FormDataContentType())
	return do(t, req)
}

// fieldsOf is sr's fields with overrides; a "" override removes a field.
func fieldsOf(sr storage.SignedRequest, override map[string]string) [][2]string {
	var out [][2]string
	for k, v := range sr.Fields {
		if o, ok := override[k]; ok {
			if o == "" {
				continue
			}
			v = o
		}
		out = append(out, [2]string{k, v})
	}
	for k, v := range override {
		if _, ok := sr.Fields[k]; !ok && v != "" {
			out = append(out, [2]string{k, v})
		}
	}
	return out
}

// TestPostPolicy: a form within the policy is stored; each condition —
// size range at its bounds, type, key, extra fields, signature, expiry —
// refuses a form that breaks it.
func TestPostPolicy(t *testing.T) {
	e := newEnv(t)
	sign := func(in storage.PostInput) storage.SignedRequest {
		t.Helper()
		sr, err := e.store.PresignPost(context.Background(), in, storage.Origin{})
		if err != nil {
			t.Fatal(err)
		}
		return sr
	}
	in := storage.PostInput{Key: "form/a.png", MinSize: 10, MaxSize: 100, ContentType: "image/png", TTL: time.Minute}
	sr := sign(in)
	for _, n := range []int{10, 100} {
		if a := postForm(t, sr.URL, fieldsOf(sr, nil), randomBytes(t, n)); a.status != 204 {
			t.Fatalf("POST of %d bytes within 10..100: %s", n, a)
		}
		if info, err := e.store.Head(context.Background(), in.Key); err != nil || info.Size != int64(n) || info.ContentType != "image/png" {
			t.Fatalf("Head = %+v, %v", info, err)
		}
	}
	in.Key = "form/refused.png"
	sr = sign(in)
	for _, c := range []struct {
		name     string
		override map[string]string
		size     int
		status   int
		code     string
	}{
		{"max+1 bytes", nil, 101, 400, "EntityTooLarge"},
		{"min-1 bytes", nil, 9, 400, "EntityTooSmall"},
		{"another type", map[string]string{"Content-Type": "text/html"}, 50, 403, "AccessDenied"},
		{"no type", map[string]string{"Content-Type": ""}, 50, 403, "AccessDenied"},
		{"another key", map[string]string{"key": "form/other.png"}, 50, 403, "AccessDenied"},
		{"extra field", map[string]string{"x-amz-meta-extra": "1"}, 50, 403, "AccessDenied"},
		{"tampered signature", map[string]string{"x-amz-signature": strings.Repeat("0", 64)}, 50, 403, "SignatureDoesNotMatch"},
		{"tampered policy", map[string]string{"policy": sr.Fields["policy"][:len(sr.Fields["policy"])-4] + "AAA="}, 50, 403, "SignatureDoesNotMatch"},
		{"no policy", map[string]string{"policy": ""}, 50, 403, "AccessDenied"},
	} {
		if a := postForm(t, sr.URL, fieldsOf(sr, c.override), randomBytes(t, c.size)); a.status != c.status || a.code != c.code {
			t.Errorf("POST %s: %s; want %d %s", c.name, a, c.status, c.code)
		}
	}
	if e.exists("form/refused.png") || e.exists("form/other.png") {
		t.Fatal("a refused POST stored an object")
	}
	if a := postForm(t, sr.URL, fieldsOf(sr, nil), randomBytes(t, 50)); a.status != 204 {
		t.Fatalf("POST as signed (positive control): %s", a)
	}

	pre := storage.PostInput{Key: "form/prefix", MinSize: 1, MaxSize: 100, ContentTypePrefix: "image/", TTL: time.Minute}
	sr = sign(pre)
	if a := postForm(t, sr.URL, fieldsOf(sr, map[string]string{"Content-Type": "text/plain"}), []byte("x")); a.status != 403 {
		t.Fatalf("text/plain under an image/ prefix: %s; want 403", a)
	}
	if a := postForm(t, sr.URL, fieldsOf(sr, map[string]string{"Content-Type": "image/webp"}), []byte("x")); a.status != 204 {
		t.Fatalf("image/webp under an image/ prefix: %s", a)
	}

	exp := storage.PostInput{Key: "form/expired.png", MinSize: 1, MaxSize: 100, ContentType: "image/png", TTL: time.Minute}
	sr = sign(exp)
	e.skew.Store(int64(61 * time.Second))
	if a := postForm(t, sr.URL, fieldsOf(sr, nil), []byte("x")); a.status != 403 || !strings.Contains(a.msg, "expired") {
		t.Fatalf("POST after the policy expired: %s; want 403 (expired)", a)
	}
	e.skew.Store(0)
	if a := postForm(t, sr.URL, fieldsOf(sr, nil), []byte("x")); a.status != 204 {
		t.Fatalf("the same POST before expiry: %s", a)
	}
}

// TestMultipart: parts assemble into one object with S3's ETag; wrong
// ETags, order, part sizes and upload ids are refused with S3's codes.
func TestMultipart(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.client(nil)
	part := func(key, id string, n int32, body []byte, signedSize int64) answer {
		sr, err := e.store.PresignPart(ctx, storage.PartInput{Key: key, UploadID: id, Number: n, Size: signedSize}, storage.Origin{})
		if err != nil {
			t.Fatal(err)
		}
		return send(t, sr, body, nil)
	}
	const big = 5 << 20
	p1, p2 := randomBytes(t, big), randomBytes(t, 10)
	id, err := e.store.CreateMultipart(ctx, "mp.zip", "application/zip")
	if err != nil {
		t.Fatal(err)
	}
	if a := part("mp.zip", id, 1, p1[:big-1], big); a.status != 403 || a.code != "SignatureDoesNotMatch" {
		t.Fatalf("part one byte short of its signed size: %s; want 403", a)
	}
	if a := part("mp.zip", "no-such-upload", 1, p2, 10); a.status != 404 || a.code != "NoSuchUpload" {
		t.Fatalf("part of an unknown upload: %s; want 404 NoSuchUpload", a)
	}
	a1, a2 := part("mp.zip", id, 1, p1, big), part("mp.zip", id, 2, p2, 0)
	if a1.status != 200 || a2.status != 200 {
		t.Fatalf("parts: %s, %s", a1, a2)
	}
	etag1, etag2 := a1.header.Get("ETag"), a2.header.Get("ETag")

	complete := func(parts ...types.CompletedPart) error {
		_, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &e.bucket, Key: aws.String("mp.zip"), UploadId: &id,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
		return err
	}
	cp := func(n int32, etag string) types.CompletedPart {
		return types.CompletedPart{PartNumber: aws.Int32(n), ETag: aws.String(etag)}
	}
	for _, bad := range []struct {
		name  string
		parts []types.CompletedPart
		code  string
	}{
		{"wrong ETag", []types.CompletedPart{cp(1, etag2), cp(2, etag2)}, "InvalidPart"},
		{"part never uploaded", []types.CompletedPart{cp(1, etag1), cp(3, etag2)}, "InvalidPart"},
		{"descending", []types.CompletedPart{cp(2, etag2), cp(1, etag1)}, "InvalidPartOrder"},
		{"small part first", []types.CompletedPart{cp(2, etag2), cp(3, etag2)}, "InvalidPart"},
	} {
		if err := complete(bad.parts...); apiCode(err) != bad.code {
			t.Errorf("complete, %s: %v; want %s", bad.name, err, bad.code)
		}
	}
	if e.exists("mp.zip") {
		t.Fatal("a refused completion stored the object")
	}
	if err := complete(cp(1, etag1), cp(2, strings.Trim(etag2, `"`))); err != nil {
		t.Fatalf("complete (positive control): %v", err)
	}
	s1, s2 := md5.Sum(p1), md5.Sum(p2)
	whole := md5.Sum(append(s1[:], s2[:]...))
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &e.bucket, Key: aws.String("mp.zip")})
	if err != nil || aws.ToString(head.ETag) != `"`+hex.EncodeToString(whole[:])+`-2"` ||
		aws.ToInt64(head.ContentLength) != big+10 || aws.ToString(head.ContentType) != "application/zip" {
		t.Fatalf("Head after complete = %v; want the MD5 of the MD5s with -2, %d bytes, application/zip", err, big+10)
	}
	if err := complete(cp(1, etag1), cp(2, etag2)); apiCode(err) != "NoSuchUpload" {
		t.Fatalf("complete twice: %v; want NoSuchUpload", err)
	}

	// Too small a part before the last.
	id2, _ := e.store.CreateMultipart(ctx, "small.bin", "application/octet-stream")
	b1, b2 := part("small.bin", id2, 1, []byte("tiny"), 4), part("small.bin", id2, 2, []byte("end"), 3)
	err = e.store.CompleteMultipart(ctx, "small.bin", id2, []storage.Part{{Number: 1, ETag: b1.header.Get("ETag")}, {Number: 2, ETag: b2.header.Get("ETag")}})
	if !errors.Is(err, storage.ErrInvalidPart) {
		t.Fatalf("complete with a 4-byte first part: %v; want ErrInvalidPart (EntityTooSmall)", err)
	}
	_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &e.bucket, Key: aws.String("small.bin"), UploadId: &id2,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{cp(1, b1.header.Get("ETag")), cp(2, b2.header.Get("ETag"))}}})
	if apiCode(err) != "EntityTooSmall" {
		t.Fatalf("complete with a 4-byte first part: %v; want EntityTooSmall", err)
	}
	if err := e.store.AbortMultipart(ctx, "small.bin", id2); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.ListParts(ctx, "small.bin", id2); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("ListParts after abort: %v; want ErrNotFound", err)
	}
	if a := part("small.bin", id2, 3, []byte("late"), 4); a.status != 404 || a.code != "NoSuchUpload" {
		t.Fatalf("part after abort: %s; want 404 NoSuchUpload", a)
	}
}

// TestPresignedGet: overrides are answered and signed; a missing key is an
// XML NoSuchKey.
func TestPresignedGet(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	body := randomBytes(t, 64)
	if a := send(t, e.presignPut(storage.PutInput{Key: "g/file.bin", Size: 64, ContentType: "image/png"}), body, nil); a.status != 200 {
		t.Fatalf("PUT: %s", a)
	}
	sr, err := e.store.PresignGet(ctx, storage.GetInput{Key: "g/file.bin", ContentDisposition: `attachment; filename="a b.png"`, ContentType: "application/x-test"}, storage.Origin{})
	if err != nil {
		t.Fatal(err)
	}
	a := send(t, sr, nil, nil)
	if a.status != 200 || !bytes.Equal(a.body, body) || a.header.Get("Content-Type") != "application/x-test" ||
		a.header.Get("Content-Disposition") != `attachment; filename="a b.png"` {
		t.Fatalf("GET with overrides: %s, headers %v", a, a.header)
	}
	if a := send(t, sr, nil, func(r *http.Request) { r.Header.Set("Range", "bytes=10-19") }); a.status != 206 || !bytes.Equal(a.body, body[10:20]) {
		t.Fatalf("ranged GET: %s, %d bytes", a, len(a.body))
	}
	tampered := sr
	tampered.URL = strings.Replace(sr.URL, "application%2Fx-test", "text%2Fhtml", 1)
	if a := send(t, tampered, nil, nil); a.status != 403 || a.code != "SignatureDoesNotMatch" {
		t.Fatalf("GET with a changed override: %s; want 403", a)
	}
	missing, _ := e.store.PresignGet(ctx, storage.GetInput{Key: "g/missing"}, storage.Origin{})
	a = send(t, missing, nil, nil)
	if a.status != 404 || a.code != "NoSuchKey" || !strings.HasPrefix(a.header.Get("Content-Type"), "application/xml") {
		t.Fatalf("GET of a missing key: %s, Content-Type %q; want 404 NoSuchKey in XML", a, a.header.Get("Content-Type"))
	}
	other := e.storeWith(func(c *s3store.Config) { c.Bucket = "no-such-bucket" })
	if _, err := other.Head(ctx, "x"); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Head in a missing bucket: %v; want ErrUnavailable", err)
	}
}

// TestBucketCORS: preflights are answered from the bucket's rules and
// refused otherwise; the ETag is exposed to an allowed origin.
func TestBucketCORS(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	preflight := func(origin, method string) answer {
		req, _ := http.NewRequest(http.MethodOptions, e.url+"/"+e.bucket+"/k", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", method)
		req.Header.Set("Access-Control-Request-Headers", "content-type")
		return do(t, req)
	}
	const app = "https://app.example"
	if a := preflight(app, "PUT"); a.status != 403 {
		t.Fatalf("preflight before any CORS rule: %s; want 403", a)
	}
	if rules, err := e.store.CORS(ctx); err != nil || rules != nil {
		t.Fatalf("CORS of a new bucket = %v, %v; want none", rules, err)
	}
	if err := e.store.PutCORS(ctx, []string{app}); err != nil {
		t.Fatalf("PutCORS: %v", err)
	}
	if rules, err := e.store.CORS(ctx); err != nil || len(rules) != 1 || rules[0].AllowedOrigins[0] != app || rules[0].MaxAgeSeconds != 3000 {
		t.Fatalf("CORS read back = %+v, %v", rules, err)
	}
	if a := preflight(app, "PUT"); a.status != 200 || a.header.Get("Access-Control-Allow-Origin") != app {
		t.Fatalf("preflight from the allowed origin: %s, headers %v", a, a.header)
	}
	if a := preflight("https://evil.example", "PUT"); a.status != 403 || a.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from another origin: %s, headers %v; want 403", a, a.header)
	}
	if a := preflight(app, "DELETE"); a.status != 403 {
		t.Fatalf("preflight for a method the rule does not allow: %s; want 403", a)
	}
	a := send(t, e.presignPut(storage.PutInput{Key: "c.txt", Size: 2, ContentType: "text/plain"}), []byte("ok"),
		func(r *http.Request) { r.Header.Set("Origin", app) })
	if a.status != 200 || a.header.Get("Access-Control-Allow-Origin") != app || !strings.Contains(a.header.Get("Access-Control-Expose-Headers"), "ETag") {
		t.Fatalf("PUT from the allowed origin: %s, headers %v; want ETag exposed", a, a.header)
	}
}

// TestListAndDelete: ListObjectsV2 pages through keys and common prefixes;
// DeleteObjects removes what it names and nothing else.
func TestListAndDelete(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.client(nil)
	for _, k := range []string{"a/1", "a/2", "b", "c/x/y", "d"} {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &e.bucket, Key: aws.String(k), Body: strings.NewReader(k)}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: &e.bucket, Delimiter: aws.String("/"), MaxKeys: aws.Int32(1)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, cp := range page.CommonPrefixes {
			got = append(got, aws.ToString(cp.Prefix))
		}
		for _, o := range page.Contents {
			got = append(got, aws.ToString(o.Key))
		}
	}
	if strings.Join(got, ",") != "a/,b,c/,d" {
		t.Fatalf("listing with delimiter, one per page: %v", got)
	}
	if err := e.store.Delete(ctx, "a/1", "b", "never-was"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &e.bucket})
	if err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for _, o := range out.Contents {
		got = append(got, aws.ToString(o.Key))
	}
	if strings.Join(got, ",") != "a/2,c/x/y,d" {
		t.Fatalf("after deleting a/1 and b: %v", got)
	}
}

// TestErrorsCarryNoSignature: no error answer carries the signature of the request
// it refuses (presigned URLs are credentials).
func TestErrorsCarryNoSignature(t *testing.T) {
	e := newEnv(t)
	sr := e.presignPut(storage.PutInput{Key: "k", Size: 5, ContentType: "text/plain"})
	a := send(t, sr, []byte("four"), nil)
	sig := mustQuery(t, sr.URL).Get("X-Amz-Signature")
	if a.status != 403 || bytes.Contains(a.body, []byte(sig)) || bytes.Contains(a.body, []byte(e.fake.SecretKey)) {
		t.Fatalf("refusal %s carries the signature or secret", a)
	}
}

func mustQuery(t *testing.T, raw string) url.Values {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}
