package s3store

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

func TestPresignPutURL(t *testing.T) {
	fixClock(t)
	in := storage.PutInput{Key: "a/b c.png", Size: 10, ContentType: "image/png"}
	for _, c := range []struct {
		name   string
		edit   func(*Config)
		origin storage.Origin
		want   string // URL up to the query
		scope  string
	}{
		{"path style", nil, storage.Origin{},
			"http://127.0.0.1:9000/uploads/a/b%20c.png?", "/us-east-1/s3/"},
		{"R2 virtual host", func(c *Config) {
			c.Endpoint, c.Region, c.UsePathStyle = "https://acct.r2.cloudflarestorage.com", "auto", false
		}, storage.Origin{}, "https://uploads.acct.r2.cloudflarestorage.com/a/b%20c.png?", "/auto/s3/"},
		{"AWS", func(c *Config) { c.Endpoint, c.Region, c.UsePathStyle = "", "eu-west-1", false }, storage.Origin{},
			"https://uploads.s3.eu-west-1.amazonaws.com/a/b%20c.png?", "/eu-west-1/s3/"},
		{"AWS dotted bucket", func(c *Config) { c.Endpoint, c.Bucket, c.UsePathStyle = "", "my.uploads", false }, storage.Origin{},
			"https://s3.us-east-1.amazonaws.com/my.uploads/a/b%20c.png?", "/us-east-1/s3/"},
		{"public endpoint", func(c *Config) { c.PublicEndpoint = "https://files.example.com" }, storage.Origin{},
			"https://files.example.com/uploads/a/b%20c.png?", "/us-east-1/s3/"},
		{"origin over virtual host", func(c *Config) { c.Endpoint, c.UsePathStyle = "https://s3.example.net", false },
			storage.Origin{Scheme: "https", Host: "site.example:8443"},
			"https://site.example:8443/uploads/a/b%20c.png?", "/us-east-1/s3/"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newTestStore(t, c.edit)
			sr, err := s.PresignPut(context.Background(), in, c.origin)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(sr.URL, c.want) {
				t.Fatalf("URL %s; want prefix %s", sr.URL, c.want)
			}
			q := mustQuery(t, sr.URL)
			if cred := q.Get("X-Amz-Credential"); cred != "AKIDEXAMPLE/20260102"+c.scope+"aws4_request" {
				t.Fatalf("credential %q", cred)
			}
		})
	}
}

func TestPresignPutSignsLengthTypeAndChecksum(t *testing.T) {
	fixClock(t)
	s := newTestStore(t, nil)
	in := storage.PutInput{Key: "k", Size: 1234, ContentType: "image/webp"}
	sr, err := s.PresignPut(context.Background(), in, storage.Origin{})
	if err != nil {
		t.Fatal(err)
	}
	q := mustQuery(t, sr.URL)
	if got := q.Get("X-Amz-SignedHeaders"); got != "content-length;content-type;host" {
		t.Fatalf("X-Amz-SignedHeaders = %q; want content-length;content-type;host", got)
	}
	if len(sr.Headers) != 2 || sr.Headers["Content-Length"] != "1234" || sr.Headers["Content-Type"] != "image/webp" {
		t.Fatalf("Headers = %v", sr.Headers)
	}
	if q.Get("X-Amz-Expires") != "60" || q.Get("X-Amz-Date") != "20260102T030405Z" ||
		q.Get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" || len(q.Get("X-Amz-Signature")) != 64 {
		t.Fatalf("query %v", q)
	}
	if !sr.Expires.Equal(signTime.Add(time.Minute)) || sr.Method != "PUT" {
		t.Fatalf("method %s expires %s", sr.Method, sr.Expires)
	}
	for k := range q {
		if strings.Contains(strings.ToLower(k), "checksum") || k == "x-id" {
			t.Fatalf("unexpected query parameter %s", k)
		}
	}

	sum := sha256.Sum256([]byte("body"))
	in.SHA256 = sum[:]
	sr, err = s.PresignPut(context.Background(), in, storage.Origin{})
	if err != nil {
		t.Fatal(err)
	}
	q = mustQuery(t, sr.URL)
	if got := q.Get("X-Amz-SignedHeaders"); got != "content-length;content-type;host;x-amz-checksum-sha256" {
		t.Fatalf("X-Amz-SignedHeaders with a checksum = %q", got)
	}
	if sr.Headers["X-Amz-Checksum-Sha256"] != base64.StdEncoding.EncodeToString(sum[:]) || len(sr.Headers) != 3 {
		t.Fatalf("Headers = %v", sr.Headers)
	}
}

func TestPresignSessionToken(t *testing.T) {
	s := newTestStore(t, func(c *Config) { c.SessionToken = "TOKEN/+=" })
	sr, err := s.PresignPut(context.Background(), storage.PutInput{Key: "k", Size: 1, ContentType: "a/b"}, storage.Origin{})
	if err != nil {
		t.Fatal(err)
	}
	if mustQuery(t, sr.URL).Get("X-Amz-Security-Token") != "TOKEN/+=" {
		t.Fatal("session token missing from the query")
	}
}

func TestPresignPart(t *testing.T) {
	s := newTestStore(t, nil)
	in := storage.PartInput{Key: "big.bin", UploadID: "id+/=x", Number: 7, Size: 5 << 20, TTL: 90 * time.Second}
	sr, err := s.PresignPart(context.Background(), in, storage.Origin{})
	if err != nil {
		t.Fatal(err)
	}
	q := mustQuery(t, sr.URL)
	if q.Get("partNumber") != "7" || q.Get("uploadId") != "id+/=x" || q.Get("X-Amz-Expires") != "90" {
		t.Fatalf("query %v", q)
	}
	if q.Get("X-Amz-SignedHeaders") != "content-length;host" || sr.Headers["Content-Length"] != "5242880" || len(sr.Headers) != 1 {
		t.Fatalf("signed %q headers %v", q.Get("X-Amz-SignedHeaders"), sr.Headers)
	}
	in.Size = 0
	sr, err = s.PresignPart(context.Background(), in, storage.Origin{})
	if err != nil {
		t.Fatal(err)
	}
	if mustQuery(t, sr.URL).Get("X-Amz-SignedHeaders") != "host" || len(sr.Headers) != 0 {
		t.Fatalf("unsized part signs %q, headers %v", mustQuery(t, sr.URL).Get("X-Amz-SignedHeaders"), sr.Headers)
	}
}

func TestPresignGet(t *testing.T) {
	s := newTestStore(t, nil)
	disp := `attachment; filename="a b.pdf"; filename*=UTF-8''a%20b.pdf`
	sr, err := s.PresignGet(context.Background(), storage.GetInput{Key: "d/a b.pdf", ContentDisposition: disp, ContentType: "application/pdf"}, storage.Origin{})
	if err != nil {
		t.Fatal(err)
	}
	q := mustQuery(t, sr.URL)
	if q.Get("response-content-disposition") != disp || q.Get("response-content-type") != "application/pdf" ||
		q.Get("X-Amz-SignedHeaders") != "host" || sr.Method != "GET" || len(sr.Headers) != 0 {
		t.Fatalf("GET %s query %v headers %v", sr.Method, q, sr.Headers)
	}
}

func TestPresignRefusesBadInput(t *testing.T) {
	s := newTestStore(t, nil)
	bg, o := context.Background(), storage.Origin{}
	put := storage.PutInput{Key: "k", Size: 1, ContentType: "a/b"}
	part := storage.PartInput{Key: "k", UploadID: "u", Number: 1, Size: 1}
	post := storage.PostInput{Key: "k", MaxSize: 10, ContentType: "a/b"}
	for name, f := range map[string]func() error{
		"put no key":       func() error { in := put; in.Key = ""; _, err := s.PresignPut(bg, in, o); return err },
		"put dot segment":  func() error { in := put; in.Key = "a/../b"; _, err := s.PresignPut(bg, in, o); return err },
		"put size 0":       func() error { in := put; in.Size = 0; _, err := s.PresignPut(bg, in, o); return err },
		"put size > 5GiB":  func() error { in := put; in.Size = 5<<30 + 1; _, err := s.PresignPut(bg, in, o); return err },
		"put no type":      func() error { in := put; in.ContentType = ""; _, err := s.PresignPut(bg, in, o); return err },
		"put short sha":    func() error { in := put; in.SHA256 = []byte{1}; _, err := s.PresignPut(bg, in, o); return err },
		"put negative ttl": func() error { in := put; in.TTL = -time.Second; _, err := s.PresignPut(bg, in, o); return err },
		"put ttl > 7d":     func() error { in := put; in.TTL = 8 * 24 * time.Hour; _, err := s.PresignPut(bg, in, o); return err },
		"part number 0":    func() error { in := part; in.Number = 0; _, err := s.PresignPart(bg, in, o); return err },
		"part number 10001": func() error {
			in := part
			in.Number = 10001
			_, err := s.PresignPart(bg, in, o)
			return err
		},
		"part no upload": func() error { in := part; in.UploadID = ""; _, err := s.PresignPart(bg, in, o); return err },
		"part negative":  func() error { in := part; in.Size = -1; _, err := s.PresignPart(bg, in, o); return err },
		"get no key":     func() error { _, err := s.PresignGet(bg, storage.GetInput{}, o); return err },
		"post max 0":     func() error { in := post; in.MaxSize = 0; _, err := s.PresignPost(bg, in, o); return err },
		"post min > max": func() error { in := post; in.MinSize = 11; _, err := s.PresignPost(bg, in, o); return err },
		"post min < 0":   func() error { in := post; in.MinSize = -1; _, err := s.PresignPost(bg, in, o); return err },
		"post no key":    func() error { in := post; in.Key = ""; _, err := s.PresignPost(bg, in, o); return err },
		"post disabled": func() error {
			_, err := newTestStore(t, func(c *Config) { c.DisablePost = true }).PresignPost(bg, post, o)
			return err
		},
	} {
		if f() == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestTTLRoundsUpToSeconds(t *testing.T) {
	s := newTestStore(t, nil)
	sr, err := s.PresignGet(context.Background(), storage.GetInput{Key: "k", TTL: 1500 * time.Millisecond}, storage.Origin{})
	if err != nil {
		t.Fatal(err)
	}
	if got := mustQuery(t, sr.URL).Get("X-Amz-Expires"); got != "2" {
		t.Fatalf("X-Amz-Expires = %s; want 2", got)
	}
}

// BenchmarkPresignPut measures the create route's signing cost.
func BenchmarkPresignPut(b *testing.B) {
	s := newTestStore(b, nil)
	in := storage.PutInput{Key: "avatars/user-123/0f8fad5b-d9cb-469f-a165-70867728950e.png", Size: 123456, ContentType: "image/png"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.PresignPut(context.Background(), in, storage.Origin{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPresignPost(b *testing.B) {
	s := newTestStore(b, nil)
	in := storage.PostInput{Key: "avatars/user-123/0f8fad5b-d9cb-469f-a165-70867728950e.png", MinSize: 1, MaxSize: 5 << 20, ContentType: "image/png"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.PresignPost(context.Background(), in, storage.Origin{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPresignPostEscaped signs a key and type that need escaping, a
// prefix condition, a session token and an origin: the slow paths.
func BenchmarkPresignPostEscaped(b *testing.B) {
	s := newTestStore(b, func(c *Config) { c.SessionToken = "FwoGZXIvYXdzEJr//////////wEaDO+/=" })
	in := storage.PostInput{Key: `avatars/user-123/"Photo" <1> 日本 🙂\.png`, MinSize: 1, MaxSize: 5 << 20, ContentTypePrefix: "image/"}
	origin := storage.Origin{Scheme: "https", Host: "site.example"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.PresignPost(context.Background(), in, origin); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPresignPostParallel signs from every CPU at once, as concurrent
// requests to the POST parameters route do.
func BenchmarkPresignPostParallel(b *testing.B) {
	s := newTestStore(b, nil)
	in := storage.PostInput{Key: "avatars/user-123/0f8fad5b-d9cb-469f-a165-70867728950e.png", MinSize: 1, MaxSize: 5 << 20, ContentType: "image/png"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.PresignPost(context.Background(), in, storage.Origin{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
