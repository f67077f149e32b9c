package storagetest

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// testPost checks the POST policy: the server enforces the size range, the
// Content-Type (exact or prefix) and the key. A store without POST support
// must say so and refuse to sign.
func testPost(t *testing.T, s storage.ObjectStore, p string) {
	in := storage.PostInput{Key: p + "post.png", MinSize: 10, MaxSize: 1000, ContentType: "image/png", TTL: time.Minute}
	if !s.SupportsPost() {
		if _, err := s.PresignPost(ctxT(t), in, storage.Origin{}); err == nil {
			t.Fatal("PresignPost succeeded on a store without POST support")
		}
		return
	}
	sign := func(in storage.PostInput) storage.SignedRequest {
		t.Helper()
		sr, err := s.PresignPost(ctxT(t), in, storage.Origin{})
		if err != nil {
			t.Fatalf("PresignPost: %v", err)
		}
		return sr
	}
	sr := sign(in)
	if sr.Method != "POST" || sr.Fields["key"] != in.Key || sr.Fields["Content-Type"] != "image/png" {
		t.Fatalf("signed POST method %q, key field %q, Content-Type field %q", sr.Method, sr.Fields["key"], sr.Fields["Content-Type"])
	}

	for _, n := range []int{10, 500, 1000} {
		body := randomBytes(t, n)
		if resp := postForm(t, sr, formFields(sr, nil), body); !resp.ok() {
			t.Fatalf("POST of %d bytes within 10..1000: %s", n, resp)
		}
		info, err := s.Head(ctxT(t), in.Key)
		if err != nil || info.Size != int64(n) || info.ContentType != "image/png" {
			t.Fatalf("Head after POST of %d bytes = %+v, %v", n, info, err)
		}
	}

	refused := func(what, key string, sr storage.SignedRequest, fields [][2]string, n int, code string) {
		t.Helper()
		resp := postForm(t, sr, fields, randomBytes(t, n))
		if !resp.refused() {
			t.Fatalf("POST %s: %s; want 4xx", what, resp)
		}
		if code != "" && !bytes.Contains(resp.body, []byte(code)) {
			t.Fatalf("POST %s: %s; want error code %s", what, resp, code)
		}
		mustBeAbsent(t, s, key)
	}
	in.Key = p + "refused.png"
	sr = sign(in)
	refused("over the maximum", in.Key, sr, formFields(sr, nil), 1001, "EntityTooLarge")
	refused("under the minimum", in.Key, sr, formFields(sr, nil), 9, "EntityTooSmall")
	refused("with another Content-Type", in.Key, sr, formFields(sr, map[string]*string{"Content-Type": ptr("text/html")}), 100, "")
	refused("without Content-Type", in.Key, sr, formFields(sr, map[string]*string{"Content-Type": nil}), 100, "")
	refused("to another key", p+"other.png", sr, formFields(sr, map[string]*string{"key": ptr(p + "other.png")}), 100, "")
	refused("with a field the policy does not name", in.Key, sr, formFields(sr, map[string]*string{"x-amz-meta-extra": ptr("1")}), 100, "")
	mustBeAbsent(t, s, in.Key)

	// A prefix condition: the client sends the file's own type.
	pre := storage.PostInput{Key: p + "prefix", MinSize: 1, MaxSize: 1000, ContentTypePrefix: "image/", TTL: time.Minute}
	sr = sign(pre)
	if _, ok := sr.Fields["Content-Type"]; ok {
		t.Fatalf("prefix policy fields carry a Content-Type %q; the client must choose it", sr.Fields["Content-Type"])
	}
	refused("of text/plain under an image/ prefix", pre.Key, sr, formFields(sr, map[string]*string{"Content-Type": ptr("text/plain")}), 100, "")
	if resp := postForm(t, sr, formFields(sr, map[string]*string{"Content-Type": ptr("image/webp")}), randomBytes(t, 100)); !resp.ok() {
		t.Fatalf("POST of image/webp under an image/ prefix: %s", resp)
	}
	if info, err := s.Head(ctxT(t), pre.Key); err != nil || info.ContentType != "image/webp" {
		t.Fatalf("Head after prefix POST = %+v, %v", info, err)
	}

	// Expired policy.
	exp := storage.PostInput{Key: p + "expired.png", MinSize: 1, MaxSize: 1000, ContentType: "image/png", TTL: time.Second}
	sr = sign(exp)
	time.Sleep(time.Until(sr.Expires) + 1500*time.Millisecond)
	refused("after expiry", exp.Key, sr, formFields(sr, nil), 100, "")

	// Tampered policy signature.
	in.Key = p + "tampered.png"
	sr = sign(in)
	sig := sr.Fields["x-amz-signature"]
	bad := strings.Repeat("0", len(sig))
	if sig == bad {
		bad = strings.Repeat("1", len(sig))
	}
	refused("with a tampered signature", in.Key, sr, formFields(sr, map[string]*string{"x-amz-signature": &bad}), 100, "")
}
