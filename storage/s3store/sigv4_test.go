package s3store

import (
	"context"
	"encoding/base64"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// sdkPresign is the reference: the SDK signer on the URL and headers the
// presigner used to hand it.
func sdkPresign(t *testing.T, s *Store, method string, u *url.URL, h http.Header, length int64) string {
	t.Helper()
	creds, err := s.creds.Retrieve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tm := now().UTC().Truncate(time.Second)
	req := &http.Request{Method: method, URL: u, Host: u.Host, Header: h, ContentLength: length}
	signed, _, err := s.signer.PresignHTTP(context.Background(), creds, req, unsignedPayload, "s3", s.region, tm)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func expiresQuery(ttl time.Duration) string {
	return "X-Amz-Expires=" + strconv.FormatInt(int64(ttl/time.Second), 10)
}

// TestPresignMatchesSDK checks that the hand-written presigner produces the
// SDK signer's URL byte for byte, over randomized keys, headers, query
// values, hosts, credentials and signing days.
func TestPresignMatchesSDK(t *testing.T) {
	old := now
	t.Cleanup(func() { now = old })
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	const alphabet = "abcXYZ019 -_.~/+?#&=%;:@!$'()*,[]\"\\\t"
	randStr := func(n int, withUnicode bool) string {
		var b strings.Builder
		for range n {
			if withUnicode && rng.IntN(8) == 0 {
				b.WriteString(pick("é", "日本", "🙂", "\u00a0", "ß"))
				continue
			}
			b.WriteByte(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	randKey := func() string {
		for {
			k := randStr(1+rng.IntN(40), true)
			if checkKey(k) == nil {
				return k
			}
		}
	}
	edits := []func(*Config){
		nil,
		func(c *Config) { c.SessionToken = "FwoGZXIvYXdzEJr//////////wEaDO+/=token with space" },
		func(c *Config) {
			c.Endpoint, c.Region, c.UsePathStyle = "https://acct.r2.cloudflarestorage.com", "auto", false
		},
		func(c *Config) { c.Endpoint, c.Region, c.UsePathStyle = "", "eu-west-1", false },
		func(c *Config) { c.Endpoint, c.Bucket, c.UsePathStyle = "", "my.uploads", false },
		func(c *Config) { c.PublicEndpoint = "https://files.example.com:443" },
		func(c *Config) { c.Endpoint = "http://127.0.0.1:80" },
		func(c *Config) { c.Endpoint = "http://[::1]:9000"; c.SessionToken = "T+/=" },
		func(c *Config) { c.AccessKeyID, c.SecretAccessKey = "AKID+/ x", "other/secret+key" },
	}
	origins := []storage.Origin{
		{},
		{Scheme: "https", Host: "site.example:8443"},
		{Scheme: "https", Host: "site.example:443"},
		{Scheme: "http", Host: "site.example:80"},
		{Scheme: "HTTP", Host: "site.example:80"},
		{Host: "[2001:db8::1]:443"},
		{Scheme: "http", Host: "[2001:db8::1]:80"},
		{Scheme: "http", Host: "[2001:db8::1]"},
		{Scheme: "https", Host: "site.example:"},
	}
	stores := make([]*Store, len(edits))
	for i, e := range edits {
		stores[i] = newTestStore(t, e)
	}
	ctx := context.Background()
	for i := range 3000 {
		tm := signTime.Add(time.Duration(rng.IntN(3)) * 24 * time.Hour).Add(time.Duration(rng.IntN(3600)) * time.Second)
		now = func() time.Time { return tm }
		s := stores[rng.IntN(len(stores))]
		origin := origins[rng.IntN(len(origins))]
		key := randKey()
		ttl := time.Duration(rng.IntN(2)) * time.Duration(1+rng.IntN(7*24*3600)) * time.Second
		tgt := s.targetFor(origin)
		var got, want string
		switch kind := rng.IntN(3); kind {
		case 0:
			in := storage.PutInput{Key: key, Size: 1 + rng.Int64N(maxPartSize), TTL: ttl,
				ContentType: pick("image/png", "text/plain; charset=utf-8", "  a/b   c  ", "x/y\t", randStr(1+rng.IntN(20), true))}
			if strings.TrimSpace(in.ContentType) == "" {
				in.ContentType = "a/b"
			}
			h := http.Header{"Content-Type": {in.ContentType}}
			if rng.IntN(2) == 0 {
				sum := make([]byte, 32)
				for j := range sum {
					sum[j] = byte(rng.IntN(256))
				}
				in.SHA256 = sum
				h["X-Amz-Checksum-Sha256"] = []string{base64.StdEncoding.EncodeToString(sum)}
			}
			if rng.IntN(2) == 0 {
				in.IfNoneMatch = true
				h["If-None-Match"] = []string{"*"}
			}
			sr, err := s.PresignPut(ctx, in, origin)
			if err != nil {
				t.Fatal(err)
			}
			ttl, _ := checkTTL(in.TTL)
			got, want = sr.URL, sdkPresign(t, s, http.MethodPut, tgt.objectURL(key, expiresQuery(ttl)), h, in.Size)
		case 1:
			in := storage.PartInput{Key: key, UploadID: randStr(1+rng.IntN(30), true), Number: int32(1 + rng.IntN(10000)),
				Size: rng.Int64N(2) * (1 + rng.Int64N(maxPartSize)), TTL: ttl}
			sr, err := s.PresignPart(ctx, in, origin)
			if err != nil {
				t.Fatal(err)
			}
			ttl, _ := checkTTL(in.TTL)
			q := expiresQuery(ttl) + "&partNumber=" + strconv.Itoa(int(in.Number)) + "&uploadId=" + url.QueryEscape(in.UploadID)
			got, want = sr.URL, sdkPresign(t, s, http.MethodPut, tgt.objectURL(key, q), http.Header{}, in.Size)
		case 2:
			in := storage.GetInput{Key: key, TTL: ttl}
			if rng.IntN(2) == 0 {
				in.CacheControl = pick("private, no-store", randStr(1+rng.IntN(20), true))
			}
			if rng.IntN(2) == 0 {
				in.ContentDisposition = `attachment; filename="` + randStr(rng.IntN(20), true) + `"`
			}
			if rng.IntN(2) == 0 {
				in.ContentType = randStr(1+rng.IntN(20), true)
			}
			sr, err := s.PresignGet(ctx, in, origin)
			if err != nil {
				t.Fatal(err)
			}
			ttl, _ := checkTTL(in.TTL)
			q := expiresQuery(ttl)
			if in.CacheControl != "" {
				q += "&response-cache-control=" + url.QueryEscape(in.CacheControl)
			}
			if in.ContentDisposition != "" {
				q += "&response-content-disposition=" + url.QueryEscape(in.ContentDisposition)
			}
			if in.ContentType != "" {
				q += "&response-content-type=" + url.QueryEscape(in.ContentType)
			}
			got, want = sr.URL, sdkPresign(t, s, http.MethodGet, tgt.objectURL(key, q), http.Header{}, 0)
		}
		if got != want {
			t.Fatalf("case %d: key %q origin %+v\n got %s\nwant %s", i, key, origin, got, want)
		}
	}
}

// TestSigningKeyCache checks the cached key is the one derived afresh, across
// days, regions and secrets.
func TestSigningKeyCache(t *testing.T) {
	for _, day := range []string{"20260102", "20260103", "20260102"} {
		for _, region := range []string{"us-east-1", "auto"} {
			for _, secret := range []string{"a", "b"} {
				k := keyFor([]byte(day), region, secret)
				m := k.get()
				m.Write([]byte("x"))
				got := m.Sum(nil)
				k.put(m)
				if want := hmacSHA256(signingKey(secret, day, region, "s3"), []byte("x")); string(got) != string(want) {
					t.Fatalf("%s %s %s: cached key differs", day, region, secret)
				}
			}
		}
	}
}
