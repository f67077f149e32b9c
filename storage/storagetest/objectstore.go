// Package storagetest is the conformance suite every storage.ObjectStore
// must pass, run against real servers: the presigned requests are sent by a
// plain net/http client, and the server itself must refuse every request
// that strays from what was signed.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// RunObjectStore runs the suite as subtests. newStore is called once per
// subtest; it may return the same bucket every time, since every subtest
// uses its own random key prefix.
func RunObjectStore(t *testing.T, newStore func(t *testing.T) storage.ObjectStore) {
	cases := []struct {
		name string
		run  func(t *testing.T, s storage.ObjectStore, prefix string)
	}{
		{"PutExact", testPutExact},
		{"PutLonger", testPutWrongLength(+1)},
		{"PutShorter", testPutWrongLength(-1)},
		{"PutOtherType", testPutOtherType},
		{"PutNoType", testPutNoType},
		{"PutTamperedSignature", testPutTampered},
		{"PutOtherKey", testPutOtherKey},
		{"PutExpired", testPutExpired},
		{"PutChecksum", testPutChecksum},
		{"PutKeyCharacters", testPutKeyCharacters},
		{"Get", testGet},
		{"HeadMissing", testHeadMissing},
		{"DeleteMany", testDeleteMany},
		{"Post", testPost},
		{"MultipartComplete", testMultipartComplete},
		{"MultipartWrongETag", testMultipartWrongETag},
		{"MultipartWrongPartSize", testMultipartWrongPartSize},
		{"MultipartUnsignedPartSize", testMultipartUnsignedPartSize},
		{"MultipartAbort", testMultipartAbort},
		{"MultipartListUploads", testMultipartListUploads},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel() // the cases wait on the network and on expiry
			c.run(t, newStore(t), randomPrefix(t))
		})
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// putInput is a small upload of a size that is not a round number.
func putInput(key string, size int64) storage.PutInput {
	return storage.PutInput{Key: key, Size: size, ContentType: "image/png", TTL: time.Minute}
}

func presignPut(t *testing.T, s storage.ObjectStore, in storage.PutInput) storage.SignedRequest {
	t.Helper()
	sr, err := s.PresignPut(ctxT(t), in, storage.Origin{})
	if err != nil {
		t.Fatalf("PresignPut: %v", err)
	}
	return sr
}

// mustBeAbsent checks that a refused request stored nothing.
func mustBeAbsent(t *testing.T, s storage.ObjectStore, key string) {
	t.Helper()
	if info, err := s.Head(ctxT(t), key); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Head(%s) after a refused upload = %+v, %v; want ErrNotFound", key, info, err)
	}
}

func testPutExact(t *testing.T, s storage.ObjectStore, p string) {
	in := putInput(p+"exact.png", 1517)
	sr := presignPut(t, s, in)
	if sr.Method != "PUT" || sr.Headers["Content-Type"] != "image/png" || sr.Headers["Content-Length"] != "1517" {
		t.Fatalf("signed request method %q headers %v; want PUT with Content-Type and Content-Length", sr.Method, sr.Headers)
	}
	if d := time.Until(sr.Expires); d <= 0 || d > time.Minute+time.Second {
		t.Fatalf("expires in %s; want about a minute", d)
	}
	body := randomBytes(t, 1517)
	resp := send(t, sr, body, nil)
	if !resp.ok() {
		t.Fatalf("PUT of exactly the signed length: %s", resp)
	}
	info, err := s.Head(ctxT(t), in.Key)
	if err != nil {
		t.Fatalf("Head: %v", err)
	}
	etag := strings.Trim(resp.header.Get("ETag"), `"`)
	if info.Size != 1517 || info.ContentType != "image/png" || info.ETag == "" || info.ETag != etag {
		t.Fatalf("Head = size %d type %q etag %q; want 1517 image/png %q", info.Size, info.ContentType, info.ETag, etag)
	}
}

func testPutWrongLength(delta int) func(*testing.T, storage.ObjectStore, string) {
	return func(t *testing.T, s storage.ObjectStore, p string) {
		in := putInput(p+"length.png", 2048)
		sr := presignPut(t, s, in)
		resp := send(t, sr, randomBytes(t, 2048+delta), nil)
		if !resp.refused() {
			t.Fatalf("PUT of %d bytes signed for 2048: %s; want 4xx", 2048+delta, resp)
		}
		mustBeAbsent(t, s, in.Key)
	}
}

func testPutOtherType(t *testing.T, s storage.ObjectStore, p string) {
	in := putInput(p+"type.png", 100)
	resp := send(t, presignPut(t, s, in), randomBytes(t, 100), func(r *http.Request) {
		r.Header.Set("Content-Type", "text/html")
	})
	if !resp.refused() {
		t.Fatalf("PUT with another Content-Type: %s; want 4xx", resp)
	}
	mustBeAbsent(t, s, in.Key)
}

func testPutNoType(t *testing.T, s storage.ObjectStore, p string) {
	in := putInput(p+"notype.png", 100)
	resp := send(t, presignPut(t, s, in), randomBytes(t, 100), func(r *http.Request) {
		r.Header.Del("Content-Type")
	})
	if !resp.refused() {
		t.Fatalf("PUT without Content-Type: %s; want 4xx", resp)
	}
	mustBeAbsent(t, s, in.Key)
}

func testPutTampered(t *testing.T, s storage.ObjectStore, p string) {
	in := putInput(p+"tampered.png", 100)
	sr := presignPut(t, s, in)
	u, err := url.Parse(sr.URL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	sig := q.Get("X-Amz-Signature")
	if sig == "" {
		t.Fatal("presigned PUT has no X-Amz-Signature")
	}
	last := sig[len(sig)-1]
	flip := map[bool]string{true: "0", false: "1"}[last != '0']
	q.Set("X-Amz-Signature", sig[:len(sig)-1]+flip)
	u.RawQuery = q.Encode()
	sr.URL = u.String()
	if resp := send(t, sr, randomBytes(t, 100), nil); !resp.refused() {
		t.Fatalf("PUT with a tampered signature: %s; want 4xx", resp)
	}
	mustBeAbsent(t, s, in.Key)
}

func testPutOtherKey(t *testing.T, s storage.ObjectStore, p string) {
	in := putInput(p+"signed.png", 100)
	sr := presignPut(t, s, in)
	if !strings.Contains(sr.URL, "/signed.png?") {
		t.Fatal("presigned URL does not end its path with the key")
	}
	sr.URL = strings.Replace(sr.URL, "/signed.png?", "/other.png?", 1)
	if resp := send(t, sr, randomBytes(t, 100), nil); !resp.refused() {
		t.Fatalf("PUT to another key: %s; want 4xx", resp)
	}
	mustBeAbsent(t, s, p+"other.png")
	mustBeAbsent(t, s, in.Key)
}

func testPutExpired(t *testing.T, s storage.ObjectStore, p string) {
	in := putInput(p+"expired.png", 100)
	in.TTL = time.Second
	sr := presignPut(t, s, in)
	time.Sleep(time.Until(sr.Expires) + 1500*time.Millisecond)
	if resp := send(t, sr, randomBytes(t, 100), nil); !resp.refused() {
		t.Fatalf("PUT after expiry: %s; want 4xx", resp)
	}
	mustBeAbsent(t, s, in.Key)
}

// testPutChecksum: a signed SHA-256 makes the server refuse a body of the
// right length and type but other content.
func testPutChecksum(t *testing.T, s storage.ObjectStore, p string) {
	body := randomBytes(t, 4096)
	sum := sha256Sum(body)
	in := putInput(p+"sum.png", 4096)
	in.SHA256 = sum[:]
	sr := presignPut(t, s, in)
	if len(sr.Headers) < 3 {
		t.Fatalf("signed headers %v; want the checksum header too", sr.Headers)
	}
	other := bytes.Clone(body)
	other[0] ^= 0xff
	if resp := send(t, sr, other, nil); !resp.refused() {
		t.Fatalf("PUT of other content under a signed checksum: %s; want 4xx", resp)
	}
	mustBeAbsent(t, s, in.Key)
	// The header is signed: leaving it out does not escape the check.
	resp := send(t, sr, other, func(r *http.Request) {
		for k := range r.Header {
			if strings.EqualFold(k, "X-Amz-Checksum-Sha256") {
				r.Header.Del(k)
			}
		}
	})
	if !resp.refused() {
		t.Fatalf("PUT of other content without the signed checksum header: %s; want 4xx", resp)
	}
	mustBeAbsent(t, s, in.Key)
	if resp := send(t, presignPut(t, s, in), body, nil); !resp.ok() {
		t.Fatalf("PUT of the content the checksum names: %s", resp)
	}
	info, err := s.Head(ctxT(t), in.Key)
	if err != nil || info.Size != 4096 {
		t.Fatalf("Head = %+v, %v", info, err)
	}
	if info.SHA256 != nil && !bytes.Equal(info.SHA256, sum[:]) {
		t.Fatalf("Head reports SHA-256 %x; want %x", info.SHA256, sum)
	}
}

// testPutKeyCharacters: keys with characters that URLs, SigV4 and S3 each
// escape differently round-trip through a presigned PUT and GET.
func testPutKeyCharacters(t *testing.T, s storage.ObjectStore, p string) {
	for _, k := range []string{
		"a b/c+d=e&f?g#h;i,j:k@l$m!n'o(p)q*r.png",
		"ünï/çødé ✓/日本.png",
		"x~y_z-1.2/%41%2F/[br]{cu}|^`.png",
		"deep/er//double-slash.png",
	} {
		key := p + k
		body := randomBytes(t, 321)
		if resp := send(t, presignPut(t, s, putInput(key, 321)), body, nil); !resp.ok() {
			t.Fatalf("PUT %q: %s", k, resp)
		}
		if info, err := s.Head(ctxT(t), key); err != nil || info.Size != 321 {
			t.Fatalf("Head %q = %+v, %v", k, info, err)
		}
		sr, err := s.PresignGet(ctxT(t), storage.GetInput{Key: key, TTL: time.Minute}, storage.Origin{})
		if err != nil {
			t.Fatalf("PresignGet %q: %v", k, err)
		}
		if resp := send(t, sr, nil, nil); resp.status != 200 || !bytes.Equal(resp.body, body) {
			t.Fatalf("GET %q: status %d, %d bytes", k, resp.status, len(resp.body))
		}
	}
}

func testGet(t *testing.T, s storage.ObjectStore, p string) {
	key := p + "dir/get me.png"
	body := randomBytes(t, 3000)
	if resp := send(t, presignPut(t, s, putInput(key, 3000)), body, nil); !resp.ok() {
		t.Fatalf("PUT: %s", resp)
	}
	disp := `attachment; filename="report 2024.png"`
	sr, err := s.PresignGet(ctxT(t), storage.GetInput{Key: key, ContentDisposition: disp, ContentType: "application/x-test", TTL: time.Minute}, storage.Origin{})
	if err != nil {
		t.Fatalf("PresignGet: %v", err)
	}
	resp := send(t, sr, nil, nil)
	if resp.status != 200 || !bytes.Equal(resp.body, body) {
		t.Fatalf("GET: status %d, %d bytes; want 200 and the uploaded bytes", resp.status, len(resp.body))
	}
	if got := resp.header.Get("Content-Disposition"); got != disp {
		t.Fatalf("Content-Disposition %q; want %q", got, disp)
	}
	if got := resp.header.Get("Content-Type"); got != "application/x-test" {
		t.Fatalf("Content-Type %q; want application/x-test", got)
	}
	// The overrides are signed: changing one breaks the signature.
	sr.URL = strings.Replace(sr.URL, "application%2Fx-test", "text%2Fhtml", 1)
	if resp := send(t, sr, nil, nil); !resp.refused() {
		t.Fatalf("GET with a changed response-content-type: %s; want 4xx", resp)
	}
}

func testHeadMissing(t *testing.T, s storage.ObjectStore, p string) {
	if _, err := s.Head(ctxT(t), p+"missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Head of a missing key: %v; want ErrNotFound", err)
	}
}

// testDeleteMany deletes more keys than one batch holds, plus a missing
// one, and checks that a key outside the set survives.
func testDeleteMany(t *testing.T, s storage.ObjectStore, p string) {
	const n = 1500
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%smany/%04d", p, i)
	}
	canary := p + "many/canary"
	uploadTiny(t, s, append(keys, canary))

	if err := s.Delete(ctxT(t), append(keys, p+"many/never-existed")...); err != nil {
		t.Fatalf("Delete of %d keys and a missing one: %v", n+1, err)
	}
	for _, i := range []int{0, 1, 998, 999, 1000, 1001, 1234, n - 1} {
		mustBeAbsent(t, s, keys[i])
	}
	if _, err := s.Head(ctxT(t), canary); err != nil {
		t.Fatalf("the key outside the deleted set is gone: %v", err)
	}
	if err := s.Delete(ctxT(t), p+"many/never-existed"); err != nil {
		t.Fatalf("Delete of one missing key: %v", err)
	}
	if err := s.Delete(ctxT(t)); err != nil {
		t.Fatalf("Delete of no keys: %v", err)
	}
	if err := s.Delete(ctxT(t), canary); err != nil {
		t.Fatalf("Delete of one key: %v", err)
	}
	mustBeAbsent(t, s, canary)
}

// uploadTiny stores one byte under each key through presigned PUTs.
func uploadTiny(t *testing.T, s storage.ObjectStore, keys []string) {
	t.Helper()
	work := make(chan string)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for key := range work {
				if err := putOne(s, key); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for _, k := range keys {
		work <- k
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

func putOne(s storage.ObjectStore, key string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sr, err := s.PresignPut(ctx, putInput(key, 1), storage.Origin{})
	if err != nil {
		return err
	}
	req, err := newRequest(ctx, sr, []byte{'x'})
	if err != nil {
		return err
	}
	resp, err := browser.Do(req)
	if err != nil {
		return fmt.Errorf("PUT %s: %v", key, redact(err))
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("PUT %s: status %d", key, resp.StatusCode)
	}
	return nil
}
