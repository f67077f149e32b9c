package s3store

import (
	"bytes"
	"io"
	"maps"
	"mime/multipart"
	"net/http"
	"slices"
	"testing"

	"github.com/caddyupload/caddyupload/internal/realservers"
	"github.com/caddyupload/caddyupload/storage"
)

// postForm sends sr's fields, with override applied (a "" value removes a
// field), and then the file, as a browser form; it returns the status and
// the start of the answer (the S3 error code), never the URL.
func postForm(t *testing.T, sr storage.SignedRequest, override map[string]string, file []byte) (int, string) {
	t.Helper()
	fields := maps.Clone(sr.Fields)
	for k, v := range override {
		if v == "" {
			delete(fields, k)
		} else {
			fields[k] = v
		}
	}
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		if err := w.WriteField(k, fields[k]); err != nil {
			t.Fatal(err)
		}
	}
	fw, err := w.CreateFormFile("file", "upload.bin")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(file)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx(t), http.MethodPost, sr.URL, &buf)
	if err != nil {
		t.Fatal("build POST request")
	}
	req.Header.Set("Content-Type", w.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal("POST to object storage failed")
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(body)
}

// TestPostEscapedConditions: keys and types that hold quotes, backslashes,
// HTML characters and non-ASCII runes upload through the signed form, and
// the servers enforce exactly them: the key or type a wrong escape would
// have produced, a size out of range, and another type are refused.
func TestPostEscapedConditions(t *testing.T) {
	onBothServers(t, func(t *testing.T, srv *realservers.S3Server) {
		s := storeOn(t, srv, nil)
		for _, c := range []struct {
			key, typ    string
			wrongKey    string // a key or type a mis-escaped policy would allow
			wrongType   string
			prefix      bool
			contentType string // sent with a prefix policy
		}{
			{key: `esc/q"uote.png`, typ: `image/png`, wrongKey: `esc/q\"uote.png`, wrongType: `image/png"`},
			{key: `esc/back\"slash.png`, typ: `image/x-"odd"`, wrongKey: `esc/back"slash.png`, wrongType: `image/x-\"odd\"`},
			{key: `esc/</script>&amp;.png`, typ: `text/html; a=<&>`, wrongKey: `esc/\u003c/script\u003e\u0026amp;.png`, wrongType: `text/html; a=\u003c\u0026\u003e`},
			{key: "esc/日本 🙂 é.png", typ: `image/\`, wrongKey: `esc/\u65e5\u672c \ud83d\ude42 \u00e9.png`, wrongType: `image/png`,
				prefix: true, contentType: `image/\png`},
		} {
			in := storage.PostInput{Key: c.key, MinSize: 1, MaxSize: 100, ContentType: c.typ}
			if c.prefix {
				in.ContentType, in.ContentTypePrefix = "", c.typ
			}
			sr, err := s.PresignPost(ctx(t), in, storage.Origin{})
			if err != nil {
				t.Fatal(err)
			}
			send := c.typ
			if c.prefix {
				send = c.contentType
			}
			for what, o := range map[string]map[string]string{
				"another key":  {"key": c.wrongKey},
				"another type": {"Content-Type": c.wrongType},
				"no type":      {"Content-Type": ""},
			} {
				if o["Content-Type"] == "" && what != "no type" {
					o["Content-Type"] = send
				}
				if status, body := postForm(t, sr, o, []byte("hello")); status < 400 || status >= 500 {
					t.Fatalf("%q: POST with %s: %d %.200s; want 4xx", c.key, what, status, body)
				}
			}
			if status, body := postForm(t, sr, map[string]string{"Content-Type": send}, make([]byte, 101)); status < 400 || status >= 500 {
				t.Fatalf("%q: POST of 101 bytes under a 100 maximum: %d %.200s; want 4xx", c.key, status, body)
			}
			for _, k := range []string{c.key, c.wrongKey} {
				if _, err := s.Head(ctx(t), k); err == nil {
					t.Fatalf("%q: object %q exists after refused POSTs", c.key, k)
				}
			}
			if status, body := postForm(t, sr, map[string]string{"Content-Type": send}, []byte("hello")); status < 200 || status >= 300 {
				t.Fatalf("%q: POST of the signed form: %d %.200s", c.key, status, body)
			}
			info, err := s.Head(ctx(t), c.key)
			if err != nil || info.Size != 5 || info.ContentType != send {
				t.Fatalf("%q: Head after POST = %+v, %v", c.key, info, err)
			}
		}
	})
}
