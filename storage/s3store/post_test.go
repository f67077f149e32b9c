package s3store

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// decodePolicy returns the policy document of a signed POST.
func decodePolicy(t *testing.T, sr storage.SignedRequest) (string, []any) {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(sr.Fields["policy"])
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Expiration string `json:"expiration"`
		Conditions []any  `json:"conditions"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Expiration, doc.Conditions
}

func TestPolicyDocument(t *testing.T) {
	fixClock(t)
	s := newTestStore(t, nil)
	in := storage.PostInput{Key: "a/b.png", MinSize: 1, MaxSize: 5 << 20, ContentType: "image/png", TTL: 2 * time.Minute}
	sr, err := s.PresignPost(context.Background(), in, storage.Origin{})
	if err != nil {
		t.Fatal(err)
	}
	if sr.Method != "POST" || sr.URL != "http://127.0.0.1:9000/uploads" || !sr.Expires.Equal(signTime.Add(2*time.Minute)) {
		t.Fatalf("method %s URL %s expires %s", sr.Method, sr.URL, sr.Expires)
	}
	exp, conds := decodePolicy(t, sr)
	if exp != "2026-01-02T03:06:05.000Z" {
		t.Fatalf("expiration %q", exp)
	}
	cred := "AKIDEXAMPLE/20260102/us-east-1/s3/aws4_request"
	want := []any{
		map[string]any{"bucket": "uploads"},
		[]any{"eq", "$key", "a/b.png"},
		[]any{"content-length-range", 1.0, float64(5 << 20)},
		[]any{"eq", "$Content-Type", "image/png"},
		map[string]any{"x-amz-algorithm": "AWS4-HMAC-SHA256"},
		map[string]any{"x-amz-credential": cred},
		map[string]any{"x-amz-date": "20260102T030405Z"},
	}
	if !reflect.DeepEqual(conds, want) {
		t.Fatalf("conditions\n got %v\nwant %v", conds, want)
	}
	wantFields := map[string]string{
		"key": "a/b.png", "Content-Type": "image/png", "policy": sr.Fields["policy"],
		"x-amz-algorithm": "AWS4-HMAC-SHA256", "x-amz-credential": cred, "x-amz-date": "20260102T030405Z",
		"x-amz-signature": hex.EncodeToString(hmacSHA256(
			signingKey("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20260102", "us-east-1", "s3"),
			[]byte(sr.Fields["policy"]))),
	}
	if !reflect.DeepEqual(sr.Fields, wantFields) {
		t.Fatalf("fields\n got %v\nwant %v", sr.Fields, wantFields)
	}
}

func TestPolicyPrefixAndToken(t *testing.T) {
	s := newTestStore(t, func(c *Config) { c.SessionToken = "TOK" })
	sr, err := s.PresignPost(context.Background(), storage.PostInput{Key: "k", MaxSize: 10, ContentTypePrefix: "image/"},
		storage.Origin{Scheme: "https", Host: "site.example"})
	if err != nil {
		t.Fatal(err)
	}
	if sr.URL != "https://site.example/uploads" {
		t.Fatalf("URL %s", sr.URL)
	}
	if _, ok := sr.Fields["Content-Type"]; ok || sr.Fields["x-amz-security-token"] != "TOK" {
		t.Fatalf("fields %v", sr.Fields)
	}
	_, conds := decodePolicy(t, sr)
	if !reflect.DeepEqual(conds[3], []any{"starts-with", "$Content-Type", "image/"}) ||
		!reflect.DeepEqual(conds[len(conds)-1], map[string]any{"x-amz-security-token": "TOK"}) {
		t.Fatalf("conditions %v", conds)
	}
}

func TestPostURLVirtualHost(t *testing.T) {
	s := newTestStore(t, func(c *Config) { c.Endpoint, c.UsePathStyle = "https://s3.example.net", false })
	sr, err := s.PresignPost(context.Background(), storage.PostInput{Key: "k", MaxSize: 10, ContentType: "a/b"}, storage.Origin{})
	if err != nil || sr.URL != "https://uploads.s3.example.net/" {
		t.Fatalf("URL %q, %v", sr.URL, err)
	}
}

// TestSigningKey checks the key derivation against the example in the
// AWS SigV4 documentation.
func TestSigningKey(t *testing.T) {
	got := hex.EncodeToString(signingKey("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830", "us-east-1", "iam"))
	if want := "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"; got != want {
		t.Fatalf("signing key %s; want %s", got, want)
	}
}
