package caddyupload

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/gabriel-vasile/mimetype"

	"github.com/caddyupload/caddyupload/internal/realservers"
	"github.com/caddyupload/caddyupload/storage"
	"github.com/caddyupload/caddyupload/storage/s3store"
)

// Files as an attacker (and an honest user) would upload them.

// pngImage is a real PNG of w×h pixels (a few hundred bytes even when
// large: one colour compresses well).
func pngImage(t testing.TB, w, h int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pngOfSize is a real PNG padded to n bytes with random data after its
// end, which decoders ignore: an upload of an exact size that passes the
// content check as a PNG.
func pngOfSize(t testing.TB, n int) []byte {
	t.Helper()
	p := pngImage(t, 4, 4)
	if len(p) > n {
		t.Fatalf("a PNG needs %d bytes", len(p))
	}
	return append(p, randomBytes(n-len(p))...)
}

// pngWithText is a PNG with a tEXt chunk holding text, right after IHDR:
// within the first bytes any sniffer reads.
func pngWithText(t testing.TB, text string) []byte {
	t.Helper()
	p := pngImage(t, 4, 4)
	const ihdrEnd = 8 + 4 + 4 + 13 + 4
	data := append([]byte("Comment\x00"), text...)
	chunk := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	chunk = append(chunk, "tEXt"...)
	chunk = append(chunk, data...)
	chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
	return append(append(append([]byte{}, p[:ihdrEnd]...), chunk...), p[ihdrEnd:]...)
}

// jpegImage is a real JPEG of w×h pixels with meta bytes of metadata (an
// APP1 segment) before its frame header, as cameras write them.
func jpegImage(t testing.TB, w, h, meta int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, image.NewGray(image.Rect(0, 0, w, h)), nil); err != nil {
		t.Fatal(err)
	}
	out := append([]byte{}, b.Bytes()[:2]...) // SOI
	for meta > 0 {
		n := min(meta, 65533)
		out = append(out, 0xFF, 0xE1)
		out = binary.BigEndian.AppendUint16(out, uint16(n+2))
		out = append(out, bytes.Repeat([]byte{'m'}, n)...)
		meta -= n
	}
	return append(out, b.Bytes()[2:]...)
}

func gifImage(t testing.TB, w, h int) []byte {
	t.Helper()
	var b bytes.Buffer
	img := image.NewPaletted(image.Rect(0, 0, w, h), color.Palette{color.Black, color.White})
	if err := gif.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// gifScript is a GIF that is also a JavaScript program: its width bytes
// open a comment ("/*") that closes after the image, where code follows —
// the classic polyglot against script-src 'self'.
func gifScript(t testing.TB) []byte {
	t.Helper()
	g := gifImage(t, 2, 2)
	g[6], g[7] = '/', '*'
	if bytes.Contains(g[8:], []byte("*/")) {
		t.Fatal("the image data closes the comment early")
	}
	return append(g, "*/=alert(document.domain);"...)
}

// gifHTML is a GIF whose first bytes also hold an HTML page (in a comment
// extension block), which a sniffing browser would render.
func gifHTML(t testing.TB) []byte {
	t.Helper()
	g := gifImage(t, 2, 2)
	page := "<html><script>alert(document.domain)</script></html>"
	ext := append([]byte{0x21, 0xFE, byte(len(page))}, page...)
	ext = append(ext, 0)
	const header = 6 + 7 + 2*3 // signature, screen descriptor, 2-colour table
	return append(append(append([]byte{}, g[:header]...), ext...), g[header:]...)
}

// peExecutable starts as a Windows executable does: MZ header, e_lfanew,
// PE signature, COFF header.
func peExecutable() []byte {
	b := make([]byte, 1024)
	copy(b, "MZ\x90\x00\x03")
	binary.LittleEndian.PutUint32(b[0x3C:], 0x80)
	copy(b[0x4E:], "This program cannot be run in DOS mode.\r\r\n$")
	copy(b[0x80:], "PE\x00\x00\x64\x86")
	return b
}

// elfExecutable starts as a 64-bit Linux executable does.
func elfExecutable() []byte {
	b := make([]byte, 512)
	copy(b, "\x7fELF\x02\x01\x01\x00")
	binary.LittleEndian.PutUint16(b[16:], 2) // ET_EXEC
	binary.LittleEndian.PutUint16(b[18:], 0x3E)
	return b
}

func zipArchive(t testing.TB, name string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("hello"))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// docx starts as a Word document does: a ZIP whose first entry is
// [Content_Types].xml, then word/.
func docx(t testing.TB) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, name := range []string{"[Content_Types].xml", "_rels/.rels", "word/document.xml"} {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("<x/>"))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// m4a starts as an AAC file from iTunes does (ISO BMFF, brand "M4A ").
func m4a() []byte {
	b := []byte("\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00M4A mp42isom\x00\x00\x00\x00")
	return append(b, make([]byte, 64)...)
}

// noise is random bytes that no detector recognises (checked).
func noise(t testing.TB, n int) []byte {
	t.Helper()
	r := rand.NewChaCha8([32]byte{7})
	b := make([]byte, n)
	r.Read(b)
	if d := mimetype.Detect(b); !d.Is(octetStream) {
		t.Fatalf("noise detected as %s", d)
	}
	return b
}

const (
	htmlPage   = "<!DOCTYPE html>\n<html><body><script>fetch('/api/me').then(r => r.text()).then(alert)</script></body></html>\n"
	pdfStart   = "%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
	csvTable   = "name,city,year\nAda,London,1815\nGrace,New York,1906\n"
	readmeHTML = "<!-- badges -->\n<p align=\"center\"><img src=\"logo.png\"></p>\n\n# Project\n\nSome text.\n"
)

// TestJudgeContent is the decision table: what the first bytes are, what
// was declared, what the route's types accept.
func TestJudgeContent(t *testing.T) {
	utf16 := []byte{'h', 0, 'i', 0, ' ', 0, 't', 0, 'h', 0, 'e', 0, 'r', 0, 'e', 0, '\n', 0}
	for _, tc := range []struct {
		name     string
		head     []byte
		declared string
		types    []string // nil: any type
		refuse   string   // substring of the reason; "" = accepted
	}{
		// Attacks: a specific format that contradicts the declaration.
		{"PE as PNG", peExecutable(), "image/png", nil, "is application/vnd.microsoft.portable-executable, not image/png"},
		{"ELF as PNG", elfExecutable(), "image/png", nil, "not image/png"},
		{"HTML as PNG", []byte(htmlPage), "image/png", nil, "is text/html, not image/png"},
		{"HTML as JPEG", []byte(htmlPage), "image/jpeg", nil, "not image/jpeg"},
		{"HTML as SVG", []byte(htmlPage), "image/svg+xml", nil, "not image/svg+xml"},
		{"PNG as text", pngImage(t, 4, 4), "text/plain", nil, "is image/png, not text/plain"},
		{"ZIP as PDF", zipArchive(t, "a.txt"), "application/pdf", nil, "is application/zip, not application/pdf"},
		{"PDF as PNG", []byte(pdfStart), "image/png", nil, "not image/png"},
		{"PE as CSV", peExecutable(), "text/csv", nil, "not text/csv"},
		{"PE as a custom type", peExecutable(), "application/x-custom", nil, "not application/x-custom"},
		{"HTML as a custom image type", []byte(htmlPage), "image/x-custom", nil, "not image/x-custom"},
		// Nothing recognised, but the declared format has a signature.
		{"noise as PNG", noise(t, 1000), "image/png", nil, "not image/png"},
		{"noise as PDF", noise(t, 1000), "application/pdf", nil, "not application/pdf"},
		{"text as JPEG", []byte("just some words\n"), "image/jpeg", nil, "not image/jpeg"},
		{"text as SVG", []byte("just some words\n"), "image/svg+xml", nil, "not image/svg+xml"},
		// application/octet-stream does not get a recognised format past types.
		{"PE as octet-stream, not in types", peExecutable(), octetStream, []string{"image/png", octetStream}, "is application/vnd.microsoft.portable-executable, which this route does not accept"},
		{"HTML as octet-stream, not in types", []byte(htmlPage), octetStream, []string{octetStream}, "which this route does not accept"},
		{"ZIP as octet-stream, not in types", zipArchive(t, "a"), octetStream, []string{"image/*", octetStream}, "is application/zip"},
		// Polyglots: an image that also carries HTML is refused; a GIF that
		// is also JavaScript is a GIF (browsers do not run image/* as script).
		{"GIF with an HTML page", gifHTML(t), "image/gif", nil, "also carries HTML markup (<html)"},
		{"PNG with a script in a text chunk", pngWithText(t, "<script>alert(1)</script>"), "image/png", nil, "also carries HTML markup (<script)"},
		{"GIF that is also JavaScript", gifScript(t), "image/gif", nil, ""},

		// Positive controls: what honest users upload.
		{"PNG", pngImage(t, 4, 4), "image/png", nil, ""},
		{"PNG with a plain text chunk", pngWithText(t, "made with a <b>camera</b> a < b"), "image/png", nil, ""},
		{"JPEG", jpegImage(t, 4, 4, 100), "image/jpeg", nil, ""},
		{"GIF", gifImage(t, 4, 4), "image/gif", nil, ""},
		{"PDF", []byte(pdfStart), "application/pdf", nil, ""},
		{"ZIP", zipArchive(t, "a.txt"), "application/zip", nil, ""},
		{"ZIP alias", zipArchive(t, "a.txt"), "application/x-zip-compressed", nil, ""},
		{"DOCX", docx(t), "application/vnd.openxmlformats-officedocument.wordprocessingml.document", nil, ""},
		{"DOCX declared as the ZIP it is", docx(t), "application/zip", []string{"application/zip"}, ""},
		{"DOCX whose first bytes show a ZIP only", zipArchive(t, "other.xml"), "application/vnd.openxmlformats-officedocument.wordprocessingml.document", nil, ""},
		{"M4A declared audio/mp4", m4a(), "audio/mp4", nil, ""},
		{"text", []byte("hello world\n"), "text/plain", nil, ""},
		{"text opening with MZ", []byte("MZ-2024 quarterly figures\nall good\n"), "text/plain", nil, ""},
		{"UTF-16 text without BOM", utf16, "text/plain", nil, ""},
		{"binary bytes as text", noise(t, 200), "text/plain", nil, ""},
		{"CSV", []byte(csvTable), "text/csv", nil, ""},
		{"CSV declared text/plain", []byte(csvTable), "text/plain", []string{"text/plain"}, ""},
		{"one-column CSV", []byte("name\nAda\nGrace\n"), "text/csv", nil, ""},
		{"JSON", []byte(`{"a": [1, 2, 3]}`), "application/json", nil, ""},
		{"JSON-LD", []byte(`{"@context": "https://schema.org"}`), "application/ld+json", nil, ""},
		{"NDJSON lines declared CSV", []byte("1\n2\n3\n"), "text/csv", nil, ""},
		{"README opening with HTML", []byte(readmeHTML), "text/markdown", []string{"text/markdown"}, ""},
		{"HTML declared HTML", []byte(htmlPage), "text/html", nil, ""},
		{"SVG", []byte(`<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"></svg>`), "image/svg+xml", nil, ""},
		{"noise as octet-stream", noise(t, 1000), octetStream, []string{octetStream}, ""},
		{"noise as a custom type", noise(t, 1000), "application/x-custom", nil, ""},
		{"text as octet-stream", []byte("ppppp"), octetStream, []string{octetStream}, ""},
		{"PE as octet-stream, any type", peExecutable(), octetStream, nil, ""},
		{"PE as octet-stream, listed", peExecutable(), octetStream, []string{octetStream, "application/vnd.microsoft.portable-executable"}, ""},
		{"ZIP as octet-stream, listed by alias", zipArchive(t, "a"), octetStream, []string{"application/x-zip-compressed", octetStream}, ""},
		{"PNG as octet-stream, image/* listed", pngImage(t, 4, 4), octetStream, []string{"image/*", octetStream}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			head := tc.head[:min(len(tc.head), sniffLen)]
			detected, reason := judgeContent(tc.declared, head, newTypeMatcher(tc.types), tc.types)
			switch {
			case tc.refuse == "" && reason != "":
				t.Errorf("refused (%s detected): %s", detected, reason)
			case tc.refuse != "" && !strings.Contains(reason, tc.refuse):
				t.Errorf("detected %s, reason %q; want a refusal containing %q", detected, reason, tc.refuse)
			}
		})
	}
}

// memStore is an object store holding objects in memory that reads
// prefixes, counting the bytes it hands out.
type memStore struct {
	storage.ObjectStore
	objects map[string][]byte
	etag    string
	read    []int64
}

func (m *memStore) ReadPrefix(_ context.Context, key string, n int64, etag string) ([]byte, error) {
	b, ok := m.objects[key]
	if !ok {
		return nil, storage.ErrNotFound
	}
	if etag != "" && etag != m.etag {
		return nil, storage.ErrConflict
	}
	m.read = append(m.read, n)
	return b[:min(int64(len(b)), n)], nil
}

// ReadRange is not used by the content check.
func (m *memStore) ReadRange(context.Context, string, string, string) (*storage.ObjectBody, error) {
	return nil, errors.New("memStore: no ranges")
}

func contentHandler(store storage.ObjectStore, types ...string) *Handler {
	return &Handler{Types: types, types: newTypeMatcher(types), store: store}
}

// TestCheckContentImageLimits reads image dimensions from the header:
// the first 4 KiB for PNG and GIF, further for a JPEG whose metadata comes
// first; images it cannot measure are refused on a route with limits.
func TestCheckContentImageLimits(t *testing.T) {
	for _, tc := range []struct {
		name     string
		body     []byte
		declared string
		w, h, px int64
		refuse   string
		reads    int // ranged reads expected
	}{
		{"PNG within limits", pngImage(t, 800, 600), "image/png", 1000, 1000, 1e6, "", 1},
		{"PNG too wide", pngImage(t, 1200, 10), "image/png", 1000, 0, 0, "1200×10 pixels, wider than this route's limit of 1000", 1},
		{"PNG too tall", pngImage(t, 10, 1200), "image/png", 0, 1000, 0, "taller than this route's limit of 1000", 1},
		{"PNG over the pixel limit", pngImage(t, 2000, 1000), "image/png", 0, 0, 1e6, "2000×1000 pixels, more than this route's limit of 1000000 pixels", 1},
		{"PNG declared as octet-stream", pngImage(t, 2000, 1000), octetStream, 0, 0, 1e6, "more than this route's limit", 1},
		{"GIF over the limit", gifImage(t, 300, 300), "image/gif", 0, 0, 80000, "the GIF image is 300×300", 1},
		{"JPEG with 60 KiB of metadata", jpegImage(t, 640, 480, 60<<10), "image/jpeg", 0, 0, 1e6, "", 2},
		{"JPEG with metadata, over the limit", jpegImage(t, 640, 480, 60<<10), "image/jpeg", 0, 0, 1000, "the JPEG image is 640×480", 2},
		{"WebP cannot be measured", append([]byte("RIFF\x24\x00\x00\x00WEBPVP8 "), make([]byte, 64)...), "image/webp", 0, 0, 1e6, "those of image/webp cannot be read", 1},
		{"truncated PNG", pngImage(t, 4, 4)[:20], "image/png", 0, 0, 1e6, "dimensions cannot be read", 1},
		{"text is not measured", []byte(csvTable), "text/csv", 0, 0, 1, "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &memStore{objects: map[string][]byte{"k": tc.body}, etag: "e1"}
			h := contentHandler(st)
			h.MaxImageWidth, h.MaxImageHeight, h.MaxImagePixels = tc.w, tc.h, tc.px
			rec := &storage.Record{Key: "k", Type: tc.declared}
			rj, err := h.checkContent(context.Background(), rec, storage.ObjectInfo{Size: int64(len(tc.body)), ETag: "e1"})
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.refuse == "" && rj != nil:
				t.Errorf("refused: %s", rj.reason)
			case tc.refuse != "" && (rj == nil || !strings.Contains(rj.reason, tc.refuse)):
				t.Errorf("got %v; want a refusal containing %q", rj, tc.refuse)
			}
			if len(st.read) != tc.reads || st.read[0] > sniffLen {
				t.Errorf("reads of %v bytes; want %d, the first at most %d", st.read, tc.reads, sniffLen)
			}
			if rj != nil {
				if ae := rj.answer(rj.reason); ae.Status != 422 || ae.Code != "verification_failed" {
					t.Errorf("answer %d %s", ae.Status, ae.Code)
				}
			}
		})
	}
}

// TestCheckContentOffAndErrors: the check can be turned off; a replaced
// object is a rejection, a store without the capability an error.
func TestCheckContentOffAndErrors(t *testing.T) {
	st := &memStore{objects: map[string][]byte{"k": peExecutable()}, etag: "e1"}
	rec := &storage.Record{Key: "k", Type: "image/png"}
	info := storage.ObjectInfo{Size: 1024, ETag: "e1"}

	h := contentHandler(st)
	if rj, err := h.checkContent(context.Background(), rec, info); err != nil || rj == nil {
		t.Fatalf("an executable declared image/png: %v, %v; want a rejection", rj, err)
	}
	h.DisableContentCheck = true
	if rj, err := h.checkContent(context.Background(), rec, info); err != nil || rj != nil || len(st.read) != 1 {
		t.Errorf("content_check off: %v, %v, %d reads; want no check and no read", rj, err, len(st.read))
	}

	h.DisableContentCheck = false
	replaced := info
	replaced.ETag = "e0"
	if rj, err := h.checkContent(context.Background(), rec, replaced); err != nil || rj == nil || !strings.Contains(rj.reason, "replaced") {
		t.Errorf("replaced object: %v, %v; want a rejection", rj, err)
	}

	type plainStore struct{ storage.ObjectStore }
	h = contentHandler(plainStore{})
	if _, err := h.checkContent(context.Background(), rec, info); err == nil || !strings.Contains(err.Error(), "content_check off") {
		t.Errorf("store without PrefixReader: %v", err)
	}
	if err := h.provisionContentCheck(); err == nil {
		t.Error("provisionContentCheck accepted a store without PrefixReader")
	}
	h.DisableContentCheck = true
	if err := h.provisionContentCheck(); err != nil {
		t.Errorf("provisionContentCheck with the check off: %v", err)
	}
	h.MaxImagePixels = 10
	if err := h.validateContentCheck(); err == nil {
		t.Error("image limits with the check off were accepted")
	}
	h.DisableContentCheck, h.MaxImagePixels = false, -1
	if err := h.validateContentCheck(); err == nil {
		t.Error("a negative limit was accepted")
	}
	h.MaxImagePixels = 10
	if err := h.validateContentCheck(); err != nil {
		t.Error(err)
	}
}

func TestContentCheckCaddyfile(t *testing.T) {
	h := parseUpload(t, "upload {\n content_check off\n}")
	if !h.DisableContentCheck {
		t.Error("content_check off not parsed")
	}
	h = parseUpload(t, "upload {\n content_check on\n max_image_width 4000\n max_image_height 3000\n max_image_pixels 12000000\n}")
	if h.DisableContentCheck || h.MaxImageWidth != 4000 || h.MaxImageHeight != 3000 || h.MaxImagePixels != 12000000 {
		t.Errorf("parsed %+v", h)
	}
	js, _ := json.Marshal(h)
	if !strings.Contains(string(js), `"max_image_pixels":12000000`) || strings.Contains(string(js), "disable_content_check") {
		t.Errorf("JSON %s", js)
	}
	for _, bad := range []string{"content_check maybe", "content_check", "max_image_width 0", "max_image_height -5", "max_image_pixels 1e6", "max_image_width 10 20"} {
		if err := parseUploadErr("upload {\n " + bad + "\n}"); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// A completion sniffs what storage holds: an attacker's file declared as
// an image is deleted and its record rejected (422), on every server,
// while honest files on the same routes are confirmed.
func TestContentCheckAtCompletion(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		s := newSite(t, srv)
		s.load(s.routesCaddyfile(map[string]string{
			"img":  "name img\n types image/png image/gif text/plain\n max_size 1MiB\n max_image_pixels 1000000",
			"free": "name free\n types image/png text/plain application/octet-stream\n max_size 20MiB",
			"off":  "name off\n types image/png\n max_size 1MiB\n content_check off",
		}))
		big := pngImage(t, 2000, 1000)

		for _, tc := range []struct {
			route, name, typ string
			body             []byte
			status           int
		}{
			{"img", "evil.png", "image/png", peExecutable(), 422},
			{"img", "evil.png", "image/png", elfExecutable(), 422},
			{"img", "page.png", "image/png", []byte(htmlPage), 422},
			{"img", "poly.gif", "image/gif", gifHTML(t), 422},
			{"img", "huge.png", "image/png", big, 422},
			{"free", "tool.bin", octetStream, peExecutable(), 422},
			// Positive controls on the same routes.
			{"img", "ok.png", "image/png", pngImage(t, 800, 600), 200},
			{"img", "padded.png", "image/png", pngOfSize(t, 5000), 200},
			{"img", "notes.txt", "text/plain", []byte("hello, this is text\n"), 200},
			{"img", "poly.gif", "image/gif", gifScript(t), 200},
			{"free", "huge.png", "image/png", big, 200},
			{"free", "blob.bin", octetStream, noise(t, 5000), 200},
			{"off", "evil.png", "image/png", peExecutable(), 200},
		} {
			c, resp := s.uploadTo(tc.route, tc.name, tc.typ, tc.body)
			rec := s.recordOn(tc.route, c.ID)
			if tc.status == 200 {
				if resp.StatusCode != 200 || rec.Status != "confirmed" || !s.objectExists(c.Key) {
					t.Errorf("%s %s on %s: %d %s, record %s; want it confirmed", tc.typ, tc.name, tc.route, resp.StatusCode, resp.body, rec.Status)
				}
				continue
			}
			expectError(t, resp.Response, tc.status, "verification_failed")
			if rec.Status != "rejected" || s.objectExists(c.Key) {
				t.Errorf("%s %s on %s: record %s, object kept %v; want rejected and deleted", tc.typ, tc.name, tc.route, rec.Status, s.objectExists(c.Key))
			}
		}

		// A multipart upload (Uppy's Companion routes) is sniffed once
		// assembled: text declared image/png is refused, declared text/plain
		// it is confirmed.
		for _, tc := range []struct {
			typ    string
			status int
		}{{"image/png", 422}, {"text/plain", 200}} {
			var m struct {
				Key      string `json:"key"`
				UploadID string `json:"uploadId"`
			}
			r := s.send("alice", "POST", "/free/s3/multipart", `{"filename":"big","type":"`+tc.typ+`"}`, nil)
			if r.StatusCode != 200 || json.Unmarshal(r.body, &m) != nil {
				t.Fatalf("create multipart: %d %s", r.StatusCode, r.body)
			}
			parts := s.uppyPartsOn("free", m.Key, m.UploadID, 5<<20, 1000)
			body, _ := json.Marshal(map[string]any{"parts": parts})
			r = s.send("alice", "POST", "/free/s3/multipart/"+m.UploadID+"/complete?key="+url.QueryEscape(m.Key), string(body), nil)
			if r.StatusCode != tc.status {
				t.Errorf("multipart %s: %d %s, want %d", tc.typ, r.StatusCode, r.body, tc.status)
			}
			if kept := s.objectExists(m.Key); kept != (tc.status == 200) {
				t.Errorf("multipart %s: object kept %v", tc.typ, kept)
			}
		}
	})
}

// uploadTo creates an upload of body on route, PUTs it and completes it;
// it returns the create answer and the completion's answer.
func (s *testSite) uploadTo(route, name, typ string, body []byte) (created, response) {
	s.t.Helper()
	var c created
	req, _ := json.Marshal(map[string]any{"filename": name, "size": len(body), "type": typ})
	r := s.send("alice", "POST", "/"+route+"/", string(req), nil)
	if r.StatusCode != http.StatusCreated || json.Unmarshal(r.body, &c) != nil {
		s.t.Fatalf("create %s on %s: %d %s", name, route, r.StatusCode, r.body)
	}
	if st := s.put(c, body, nil); st != http.StatusOK {
		s.t.Fatalf("PUT %s: %d", name, st)
	}
	return c, s.send("alice", "POST", "/"+route+"/"+c.ID+"/complete", "", nil)
}

func (s *testSite) recordOn(route, id string) record {
	s.t.Helper()
	var rec record
	r := s.send("alice", "GET", "/"+route+"/"+id, "", nil)
	if r.StatusCode != 200 || json.Unmarshal(r.body, &rec) != nil {
		s.t.Fatalf("GET record: %d %s", r.StatusCode, r.body)
	}
	return rec
}

// uppyPartsOn uploads parts of the given sizes to a Companion multipart
// upload on route, as Uppy does.
func (s *testSite) uppyPartsOn(route, key, id string, sizes ...int) []companionPart {
	s.t.Helper()
	var parts []companionPart
	for i, n := range sizes {
		var signed struct {
			URL string `json:"url"`
		}
		r := s.send("alice", "GET", "/"+route+"/s3/multipart/"+id+"/"+strconv.Itoa(i+1)+"?key="+url.QueryEscape(key), "", nil)
		if r.StatusCode != 200 || json.Unmarshal(r.body, &signed) != nil {
			s.t.Fatalf("sign part %d: %d %s", i+1, r.StatusCode, r.body)
		}
		req, _ := http.NewRequest(http.MethodPut, signed.URL, strings.NewReader(strings.Repeat("p", n)))
		resp := do(s.t, http.DefaultClient, req)
		if resp.StatusCode != 200 {
			s.t.Fatalf("part %d: %d %s", i+1, resp.StatusCode, resp.body)
		}
		parts = append(parts, companionPart{PartNumber: int32(i + 1), ETag: resp.Header.Get("ETag")})
	}
	return parts
}

// BenchmarkContentCheck is the cost a completion pays for the content
// check against the in-process S3 server: one ranged GET of 4 KiB and the
// detection; "limits" adds reading a PNG's dimensions.
func BenchmarkContentCheck(b *testing.B) {
	srv := realservers.SharedFake(b)
	st, err := s3store.New(context.Background(), s3store.Config{
		Endpoint: srv.Endpoint, Region: srv.Region, Bucket: srv.NewBucket(b),
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, UsePathStyle: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	body := append(pngImage(b, 1920, 1080), noise(b, 1<<20)...) // a 1 MiB file
	if _, err := srv.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(st.Bucket()), Key: aws.String("photo.png"), Body: bytes.NewReader(body)}); err != nil {
		b.Fatal(err)
	}
	info, err := st.Head(ctx, "photo.png")
	if err != nil {
		b.Fatal(err)
	}
	rec := &storage.Record{Key: "photo.png", Type: "image/png"}
	for _, limits := range []bool{false, true} {
		name := "sniff"
		h := contentHandler(st, "image/png")
		if limits {
			name, h.MaxImagePixels = "limits", 4e6
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if rj, err := h.checkContent(ctx, rec, info); rj != nil || err != nil {
					b.Fatal(rj, err)
				}
			}
		})
	}
	// Detection alone: a PNG is recognised at once; 4 KiB of text goes
	// through every detector (the text ones parse), the slowest case.
	for _, tc := range []struct {
		name, typ string
		head      []byte
	}{
		{"detect-png", "image/png", body[:sniffLen]},
		{"detect-csv", "text/csv", []byte(strings.Repeat(csvTable[15:], sniffLen/20)[:sniffLen])},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, reason := judgeContent(tc.typ, tc.head, newTypeMatcher(nil), nil); reason != "" {
					b.Fatal(reason)
				}
			}
		})
	}
}

func parseUpload(t *testing.T, in string) *Handler {
	t.Helper()
	h := new(Handler)
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err != nil {
		t.Fatalf("%s: %v", in, err)
	}
	return h
}

func parseUploadErr(in string) error {
	return new(Handler).UnmarshalCaddyfile(caddyfile.NewTestDispenser(in))
}

// FuzzJudgeContent: any bytes under any declared type get a decision,
// never a panic, and an image on a route with limits is measured or
// refused.
func FuzzJudgeContent(f *testing.F) {
	f.Add([]byte(htmlPage), "image/png")
	f.Add(pngImage(f, 4, 4), "image/png")
	f.Add(gifHTML(f), "image/gif")
	f.Add(jpegImage(f, 4, 4, 10), "image/jpeg")
	f.Add(peExecutable(), octetStream)
	f.Add([]byte(csvTable), "text/csv")
	f.Fuzz(func(t *testing.T, head []byte, declared string) {
		mt, ok := parseMediaType(declared)
		if !ok {
			return
		}
		head = head[:min(len(head), sniffLen)]
		judgeContent(mt, head, newTypeMatcher([]string{octetStream, "image/*"}), []string{octetStream, "image/*"})
		st := &memStore{objects: map[string][]byte{"k": head}}
		h := contentHandler(st)
		h.MaxImagePixels = 1e6
		if _, err := h.checkContent(context.Background(), &storage.Record{Key: "k", Type: mt}, storage.ObjectInfo{Size: int64(len(head))}); err != nil {
			t.Fatal(err)
		}
	})
}

// BenchmarkComplete is a whole completion of a 1 MiB PNG against the
// in-process S3 server: HEAD, the content check (one ranged GET of 4 KiB)
// or not, and the durable confirmation.
func BenchmarkComplete(b *testing.B) {
	srv := realservers.SharedFake(b)
	body := append(pngImage(b, 640, 480), noise(b, 1<<20)...)
	for _, check := range []bool{true, false} {
		name := map[bool]string{true: "content-check", false: "no-content-check"}[check]
		b.Run(name, func(b *testing.B) {
			h := &Handler{Key: "c/{uuid}{ext}", Types: []string{"image/png"}, DisableContentCheck: !check}
			h.setDefaults()
			if err := provisionForTest(b, h); err != nil {
				b.Fatal(err)
			}
			st, err := s3store.New(context.Background(), s3store.Config{
				Endpoint: srv.Endpoint, Region: srv.Region, Bucket: srv.NewBucket(b),
				AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, UsePathStyle: true,
			})
			if err != nil {
				b.Fatal(err)
			}
			h.store = st
			h.completing = new(recordLocks)
			if err := h.provisionContentCheck(); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				rec := h.newRecord(identity{Subject: "bench-user"}, upload{filename: "p.png", size: int64(len(body)), mimeType: "image/png", ext: ".png"}, storage.KindPut)
				if err := h.ledger.Create(ctx, rec); err != nil {
					b.Fatal(err)
				}
				if _, err := srv.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(st.Bucket()), Key: aws.String(rec.Key), Body: bytes.NewReader(body), ContentType: aws.String("image/png")}); err != nil {
					b.Fatal(err)
				}
				req := httptest.NewRequest("POST", "/"+rec.ID+"/complete", nil)
				w := httptest.NewRecorder()
				b.StartTimer()
				if err := h.ServeHTTP(w, req, nil); err != nil || w.Code != 200 {
					b.Fatalf("%d %v %s", w.Code, err, w.Body)
				}
			}
		})
	}
}
