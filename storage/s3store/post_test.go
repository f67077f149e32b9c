package s3store

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"reflect"
	"strconv"
	"strings"
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

// referencePresignPost is PresignPost as first written, with the policy
// built from maps and slices by encoding/json: the reference the
// hand-written policy writer is checked against.
func referencePresignPost(ctx context.Context, s *Store, in storage.PostInput, origin storage.Origin) (storage.SignedRequest, error) {
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
		return storage.SignedRequest{}, err
	}
	t := now().UTC().Truncate(time.Second)
	date := t.Format(amzDate)
	credential := creds.AccessKeyID + "/" + date[:8] + "/" + s.region + "/s3/aws4_request"

	typeCond := []any{"starts-with", "$Content-Type", in.ContentTypePrefix}
	if in.ContentType != "" {
		typeCond = []any{"eq", "$Content-Type", in.ContentType}
	}
	conds := []any{
		map[string]string{"bucket": s.bucket},
		[]any{"eq", "$key", in.Key},
		[]any{"content-length-range", in.MinSize, in.MaxSize},
		typeCond,
		map[string]string{"x-amz-algorithm": sigAlgorithm},
		map[string]string{"x-amz-credential": credential},
		map[string]string{"x-amz-date": date},
	}
	if creds.SessionToken != "" {
		conds = append(conds, map[string]string{"x-amz-security-token": creds.SessionToken})
	}
	exp := t.Add(ttl)
	doc, err := json.Marshal(struct {
		Expiration string `json:"expiration"`
		Conditions []any  `json:"conditions"`
	}{exp.Format("2006-01-02T15:04:05.000Z"), conds})
	if err != nil {
		return storage.SignedRequest{}, err
	}
	policy := base64.StdEncoding.EncodeToString(doc)
	fields := map[string]string{
		"key":              in.Key,
		"policy":           policy,
		"x-amz-algorithm":  sigAlgorithm,
		"x-amz-credential": credential,
		"x-amz-date":       date,
		"x-amz-signature":  hex.EncodeToString(PolicySignature(creds.SecretAccessKey, date[:8], s.region, policy)),
	}
	if in.ContentType != "" {
		fields["Content-Type"] = in.ContentType
	}
	if creds.SessionToken != "" {
		fields["x-amz-security-token"] = creds.SessionToken
	}
	return storage.SignedRequest{Method: http.MethodPost, URL: s.targetFor(origin).bucketURL(), Fields: fields, Expires: exp}, nil
}

// nastyStr is a random string of the characters a JSON writer can get
// wrong: quotes, backslashes, control bytes, HTML characters, line and
// paragraph separators, multi-byte runes and bytes of invalid UTF-8.
func nastyStr(rng *rand.Rand, n int) string {
	pieces := []string{
		"a", "Z", "0", "/", " ", "-", ".", "$", "%", "+", "=", "'", "`",
		`"`, `\`, `\"`, `\u0022`, "<", ">", "&", "</script>",
		"\x00", "\x01", "\b", "\f", "\n", "\r", "\t", "\x1f", "\x7f",
		"é", "日本", "🙂", "\u00a0", "\u2028", "\u2029", "\ufeff", "\ufffd",
		"\xff", "\xc3", "\xe2\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80",
	}
	var b strings.Builder
	for range n {
		b.WriteString(pieces[rng.IntN(len(pieces))])
	}
	return b.String()
}

// TestPresignPostMatchesReference: over randomized keys, types, size
// ranges, lifetimes, credentials, regions, targets and signing times, the
// signed POST is the reference's: same URL, expiry and fields, so the same
// policy bytes and signature; the decoded policies are equal too.
func TestPresignPostMatchesReference(t *testing.T) {
	old := now
	t.Cleanup(func() { now = old })
	rng := rand.New(rand.NewPCG(3, 4))
	edits := []func(*Config){
		nil,
		func(c *Config) { c.SessionToken = "FwoGZXIvYXdzEJr//////////wEaDO+/=token with space" },
		func(c *Config) { c.SessionToken = nastyStr(rng, 12) },
		func(c *Config) { c.Endpoint, c.Region, c.UsePathStyle = "https://s3.example.net", "eu-west-1", false },
		func(c *Config) { c.Endpoint, c.Bucket, c.UsePathStyle = "", "my.uploads", false },
		func(c *Config) { c.PublicEndpoint = "https://files.example.com:443" },
		func(c *Config) { c.AccessKeyID, c.SecretAccessKey = "AKID+/ x", "other/secret+key" },
		func(c *Config) { c.AccessKeyID, c.Region = nastyStr(rng, 8), nastyStr(rng, 6) },
	}
	origins := []storage.Origin{
		{},
		{Scheme: "https", Host: "site.example:8443"},
		{Scheme: "http", Host: "[2001:db8::1]:80"},
		{Host: "localhost:9000"},
	}
	stores := make([]*Store, len(edits))
	for i, e := range edits {
		stores[i] = newTestStore(t, e)
	}
	sizes := []int64{-1, 0, 1, 2, 1000, 5 << 20, maxPartSize - 1, maxPartSize, maxPartSize + 1}
	randSize := func() int64 {
		if rng.IntN(2) == 0 {
			return sizes[rng.IntN(len(sizes))]
		}
		return rng.Int64N(maxPartSize + 1)
	}
	ctx := context.Background()
	var signed int
	for i := range 3000 {
		tm := time.Date(1990+rng.IntN(100), time.Month(1+rng.IntN(12)), 1+rng.IntN(31),
			rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1e9), time.FixedZone("x", 3600*(rng.IntN(25)-12)))
		now = func() time.Time { return tm }
		s := stores[rng.IntN(len(stores))]
		origin := origins[rng.IntN(len(origins))]
		in := storage.PostInput{Key: nastyStr(rng, 1+rng.IntN(30)), MinSize: randSize(), MaxSize: randSize(),
			TTL: time.Duration(rng.Int64N(int64(8 * 24 * time.Hour)))}
		if rng.IntN(4) == 0 {
			in.MinSize = min(in.MinSize, in.MaxSize)
		}
		switch rng.IntN(4) {
		case 0:
			in.ContentType = nastyStr(rng, 1+rng.IntN(10))
		case 1:
			in.ContentTypePrefix = nastyStr(rng, rng.IntN(6))
		case 2:
			in.ContentType = "image/png"
		case 3:
			in.ContentTypePrefix = "image/"
		}
		got, gerr := s.PresignPost(ctx, in, origin)
		want, werr := referencePresignPost(ctx, s, in, origin)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("case %d: %+v: error %v; reference error %v", i, in, gerr, werr)
		}
		if gerr != nil {
			continue
		}
		signed++
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("case %d: %+v\n got %+v\nwant %+v", i, in, got, want)
		}
		gotExp, gotConds := decodePolicy(t, got)
		wantExp, wantConds := decodePolicy(t, want)
		if gotExp != wantExp || !reflect.DeepEqual(gotConds, wantConds) {
			t.Fatalf("case %d: decoded policy differs", i)
		}
	}
	if signed < 500 {
		t.Fatalf("only %d of 3000 random inputs were signed", signed)
	}
}

// TestPolicyConditionsAreTheInput: for keys and types holding every
// character that needs escaping, the policy decodes (base64, then
// encoding/json) to conditions equal to the input, field by field; the
// form fields carry the same values; the signature is the policy's.
func TestPolicyConditionsAreTheInput(t *testing.T) {
	fixClock(t)
	rng := rand.New(rand.NewPCG(5, 6))
	token := `tok"en\` + "\n\u2028</script>"
	s := newTestStore(t, func(c *Config) { c.SessionToken = token })
	cases := []storage.PostInput{
		{Key: `a"b`, ContentType: `image/png"}]`},
		{Key: `a\"b`, ContentType: `a\b`},
		{Key: `a\`, ContentTypePrefix: `image/\`},
		{Key: `"],["eq","$key","other"]`, ContentType: `"},{"x":"`},
		{Key: "tab\there\nnew\rline\x00nul\x1f\x7f", ContentType: "text/plain\b\f"},
		{Key: "</script><b>&amp;", ContentType: "text/html; a=<&>"},
		{Key: "line\u2028para\u2029", ContentTypePrefix: "\u2028"},
		{Key: "日本/🙂 é\u00a0\ufeff", ContentType: "image/日本"},
		{Key: `\u0022`, ContentType: `\u0000`},
		{Key: "k", ContentTypePrefix: ""},
	}
	for range 200 {
		in := storage.PostInput{Key: nastyStr(rng, 1+rng.IntN(20))}
		if rng.IntN(2) == 0 {
			in.ContentType = nastyStr(rng, 1+rng.IntN(8))
		} else {
			in.ContentTypePrefix = nastyStr(rng, rng.IntN(8))
		}
		cases = append(cases, in)
	}
	var checked int
	for i, in := range cases {
		in.MinSize, in.MaxSize = int64(i), maxPartSize-int64(i)
		sr, err := s.PresignPost(context.Background(), in, storage.Origin{})
		if checkKey(in.Key) != nil {
			if err == nil {
				t.Fatalf("key %q refused by checkKey was signed", in.Key)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", in.Key, err)
		}
		checked++
		raw, err := base64.StdEncoding.DecodeString(sr.Fields["policy"])
		if err != nil || !json.Valid(raw) {
			t.Fatalf("%q: policy is not base64 of valid JSON: %v", in.Key, err)
		}
		var doc struct {
			Expiration string            `json:"expiration"`
			Conditions []json.RawMessage `json:"conditions"`
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&doc); err != nil {
			t.Fatal(err)
		}
		if doc.Expiration != "2026-01-02T03:05:05.000Z" {
			t.Fatalf("expiration %q", doc.Expiration)
		}
		// What JSON can carry of the input: invalid UTF-8 becomes U+FFFD,
		// byte by byte, as encoding/json writes it; then key and field
		// differ and the server refuses the form.
		valid := func(s string) string { return string([]rune(s)) }
		typeOp, typeVal := "starts-with", in.ContentTypePrefix
		if in.ContentType != "" {
			typeOp, typeVal = "eq", in.ContentType
		}
		want := []string{
			mustJSON(t, map[string]string{"bucket": "uploads"}),
			mustJSON(t, []string{"eq", "$key", valid(in.Key)}),
			"",
			mustJSON(t, []string{typeOp, "$Content-Type", valid(typeVal)}),
			mustJSON(t, map[string]string{"x-amz-algorithm": "AWS4-HMAC-SHA256"}),
			mustJSON(t, map[string]string{"x-amz-credential": "AKIDEXAMPLE/20260102/us-east-1/s3/aws4_request"}),
			mustJSON(t, map[string]string{"x-amz-date": "20260102T030405Z"}),
			mustJSON(t, map[string]string{"x-amz-security-token": token}),
		}
		if len(doc.Conditions) != len(want) {
			t.Fatalf("%q: %d conditions; want %d", in.Key, len(doc.Conditions), len(want))
		}
		for j, c := range doc.Conditions {
			var got any
			if err := json.Unmarshal(c, &got); err != nil {
				t.Fatal(err)
			}
			if j == 2 {
				var r []any
				d := json.NewDecoder(bytes.NewReader(c))
				d.UseNumber()
				if err := d.Decode(&r); err != nil || len(r) != 3 || r[0] != "content-length-range" ||
					r[1] != json.Number(strconv.FormatInt(in.MinSize, 10)) || r[2] != json.Number(strconv.FormatInt(in.MaxSize, 10)) {
					t.Fatalf("size condition %s; want %d..%d", c, in.MinSize, in.MaxSize)
				}
				continue
			}
			var w any
			if err := json.Unmarshal([]byte(want[j]), &w); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, w) {
				t.Fatalf("%q: condition %d is %s; want %s", in.Key, j, c, want[j])
			}
		}
		if sr.Fields["key"] != in.Key || sr.Fields["Content-Type"] != in.ContentType || sr.Fields["x-amz-security-token"] != token {
			t.Fatalf("%q: fields %q", in.Key, sr.Fields)
		}
		if _, ok := sr.Fields["Content-Type"]; ok != (in.ContentType != "") {
			t.Fatalf("%q: Content-Type field present %v with ContentType %q", in.Key, ok, in.ContentType)
		}
		sig := hex.EncodeToString(PolicySignature("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20260102", "us-east-1", sr.Fields["policy"]))
		if sr.Fields["x-amz-signature"] != sig {
			t.Fatalf("%q: signature is not the policy's", in.Key)
		}
	}
	if checked < 100 {
		t.Fatalf("only %d cases passed checkKey", checked)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPolicyTimes: the policy's expiration and x-amz-date are what
// time.Format gives, including years the digit writer does not handle.
func TestPolicyTimes(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		if got, want := string(appendTime(nil, tm, false)), tm.Format(amzDate); got != want {
			t.Errorf("%v: amz date %s; want %s", tm, got, want)
		}
		if got, want := string(appendTime(nil, tm, true)), tm.Format(policyExpiry); got != want {
			t.Errorf("%v: expiration %s; want %s", tm, got, want)
		}
	}
}
