package caddyupload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // image.DecodeConfig reads what is registered
	_ "image/jpeg"
	_ "image/png"
	"mime"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/gabriel-vasile/mimetype"

	"github.com/caddyupload/caddyupload/storage"
)

// This file holds the content check of a completion: what the stored bytes
// really are, read from their first bytes, must agree with the declared
// type and the route's policy. Size, type header and checksum are checked
// before it (mismatch); the bytes themselves only here.

// sniffLen is how many bytes are read for detection: mimetype's default
// read limit, beyond which its detectors look at nothing.
const sniffLen = 4096

// maxImageHeader bounds how far into an image its dimensions are looked
// for. PNG and GIF carry them in their first bytes; a JPEG's frame header
// comes after its metadata segments (EXIF with a thumbnail, ICC profile,
// XMP: up to 64 KiB each), so a second, longer read may be needed.
const maxImageHeader = 1 << 20

// checkContent reads the first bytes of rec's object (one ranged GET, bound
// to the ETag that was verified) and checks them against the declared type,
// the route's types and its image limits. A disagreement is a *rejection;
// a storage failure is an error.
func (h *Handler) checkContent(ctx context.Context, rec *storage.Record, info storage.ObjectInfo) (*rejection, error) {
	if h.DisableContentCheck || info.Size <= 0 {
		return nil, nil
	}
	pr, ok := h.store.(storage.PrefixReader)
	if !ok {
		return nil, fmt.Errorf("content_check: storage %T cannot read the start of an object; set content_check off", h.store)
	}
	head, rj, err := readHead(ctx, pr, rec.Key, min(info.Size, sniffLen), info.ETag)
	if rj != nil || err != nil {
		return rj, err
	}
	detected, reason := judgeContent(rec.Type, head, h.types, h.Types)
	if reason != "" {
		return rejectAs(errVerification, "%s", reason), nil
	}
	// Limits apply to what is served as an image: an image declared as
	// one, or one declared as opaque bytes.
	if !h.limitsImages() || !rasterImage(rec.Type) && !(rec.Type == octetStream && rasterImage(detected)) {
		return nil, nil
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(head))
	if err != nil && !errors.Is(err, image.ErrFormat) && int64(len(head)) < info.Size {
		// The dimensions lie further in (a JPEG's metadata comes first).
		if head, rj, err = readHead(ctx, pr, rec.Key, min(info.Size, maxImageHeader), info.ETag); rj != nil || err != nil {
			return rj, err
		}
		cfg, format, err = image.DecodeConfig(bytes.NewReader(head))
	}
	switch {
	case errors.Is(err, image.ErrFormat):
		return rejectAs(errVerification, "this route limits image dimensions, and those of %s cannot be read (only PNG, JPEG and GIF)", detected), nil
	case err != nil:
		return rejectAs(errVerification, "the image's dimensions cannot be read from its first %d bytes", len(head)), nil
	}
	if reason := h.imageOverLimits(int64(cfg.Width), int64(cfg.Height)); reason != "" {
		return rejectAs(errVerification, "the %s image is %d×%d pixels, %s", strings.ToUpper(format), cfg.Width, cfg.Height, reason).as(rejectLimit), nil
	}
	return nil, nil
}

// readHead reads the first n bytes of key as it was verified (etag). An
// object replaced since is rejected: what was verified is gone.
func readHead(ctx context.Context, pr storage.PrefixReader, key string, n int64, etag string) ([]byte, *rejection, error) {
	head, err := pr.ReadPrefix(ctx, key, n, etag)
	switch {
	case errors.Is(err, storage.ErrConflict):
		return nil, rejectAs(errVerification, "the object was replaced while it was verified"), nil
	case err != nil:
		return nil, nil, err
	}
	return head, nil, nil
}

// judgeContent decides whether head, the first bytes of an object declared
// as declared, is that. It returns the detected type (bare) and, when the
// object must be refused, why.
//
// The detector (mimetype) places every format in a tree rooted at
// application/octet-stream, text formats under text/plain; a DOCX is a ZIP.
// The rules, in order:
//
//   - Nothing specific detected (application/octet-stream, text/plain):
//     refused when the declared type is a binary format the detector knows
//     a signature for (image/png, application/pdf, ...), since the bytes are
//     not that format; accepted for text types and for types without a
//     known signature (application/octet-stream, a custom type).
//   - The detected type is the declared one or a kind of it (a DOCX
//     declared application/zip): accepted. But application/octet-stream
//     does not get a recognised format past the route's types: an
//     executable or a ZIP declared as application/octet-stream needs its
//     own type (or one it belongs to) in types.
//   - The detected type is a container of the declared one (the first
//     bytes show a ZIP, the declared DOCX is one): accepted.
//   - A text type declared and text found: accepted. Text formats are told
//     apart by heuristics (a CSV, a JSON document and a README that opens
//     with an HTML comment all pass for one another), and the object is
//     served with its declared type, which a browser does not execute.
//     A printable signature at the start of a text file ("MZ", "GIF89a")
//     does not make it a binary format either.
//   - Audio, video and images in the same container (ISO BMFF: MP4, M4A,
//     HEIC, AVIF): accepted; encoders pick their brands loosely.
//   - Anything else is a contradiction: refused (an executable or HTML
//     declared image/png, a PNG declared text/plain, a ZIP declared
//     application/pdf).
//
// An accepted raster image must not also carry HTML markup in its first
// bytes (a polyglot some browsers and tools would render as a page); a GIF
// that is also valid JavaScript is accepted, since browsers refuse to run
// a script served as image/* (Fetch standard, "should response to request
// be blocked due to its MIME type").
func judgeContent(declared string, head []byte, types typeMatcher, listed []string) (detected, reason string) {
	d := mimetype.Detect(head)
	detected = bareType(d.String())
	decl := mimetype.Lookup(declared) // nil: no signature known
	text := textType(declared, decl)

	switch {
	case generic(d):
		if decl != nil && !text && !decl.Is(octetStream) {
			return detected, fmt.Sprintf("the object is not %s: its first bytes are not in that format", declared)
		}
	case kindOf(d, declared):
		if decl != nil && decl.Is(octetStream) && !covered(d, types, listed) {
			return detected, fmt.Sprintf("the object is %s, which this route does not accept", detected)
		}
	case decl != nil && kindOf(decl, detected):
	case text && (kindOf(d, textPlain) || !binaryBytes(head)):
	case decl != nil && media(declared) && media(detected) && sameContainer(d, decl):
	default:
		return detected, fmt.Sprintf("the object is %s, not %s", detected, declared)
	}
	if rasterImage(declared) {
		if tag := htmlMarkup(head); tag != "" {
			return detected, fmt.Sprintf("the %s image also carries HTML markup (%s)", declared, tag)
		}
	}
	return detected, ""
}

const (
	octetStream = "application/octet-stream"
	textPlain   = "text/plain"
)

// generic reports a detection that names no format: the tree's root, or
// text without a more specific kind.
func generic(m *mimetype.MIME) bool {
	return m.Parent() == nil || m.Is(textPlain)
}

// kindOf reports whether m is t or, in the detector's tree, a kind of t.
func kindOf(m *mimetype.MIME, t string) bool {
	for ; m != nil; m = m.Parent() {
		if m.Is(t) {
			return true
		}
	}
	return false
}

// sameContainer reports whether a and b share an ancestor more specific
// than the tree's root.
func sameContainer(a, b *mimetype.MIME) bool {
	for x := a.Parent(); x != nil && x.Parent() != nil; x = x.Parent() {
		if kindOf(b, bareType(x.String())) {
			return true
		}
	}
	return false
}

// covered reports whether the route's types accept m or a format m is a
// kind of, other than application/octet-stream. Aliases count: a route
// listing application/x-zip-compressed accepts what is detected as
// application/zip.
func covered(m *mimetype.MIME, types typeMatcher, listed []string) bool {
	for ; m != nil && m.Parent() != nil; m = m.Parent() {
		if types.allows(bareType(m.String())) {
			return true
		}
		for _, t := range listed {
			if m.Is(strings.ToLower(strings.TrimSpace(t))) {
				return true
			}
		}
	}
	return false
}

// textType reports whether declared is text: text/*, a structured syntax
// suffix (+json, +xml; RFC 6839) or a format the detector files under
// text/plain (application/json, application/javascript, ...). Images are
// not, even when their syntax is (SVG, PBM): an image has a signature.
func textType(declared string, decl *mimetype.MIME) bool {
	if strings.HasPrefix(declared, "image/") {
		return false
	}
	return strings.HasPrefix(declared, "text/") ||
		strings.HasSuffix(declared, "+json") || strings.HasSuffix(declared, "+xml") ||
		decl != nil && kindOf(decl, textPlain)
}

// media reports audio, video and raster image types.
func media(t string) bool {
	return strings.HasPrefix(t, "audio/") || strings.HasPrefix(t, "video/") || rasterImage(t)
}

// rasterImage reports image types other than SVG, which is markup.
func rasterImage(t string) bool {
	return strings.HasPrefix(t, "image/") && t != "image/svg+xml"
}

// bareType drops parameters ("text/plain; charset=utf-8" → "text/plain").
func bareType(t string) string {
	if mt, _, err := mime.ParseMediaType(t); err == nil {
		return mt
	}
	return t
}

// binaryBytes reports whether b holds a binary data byte as the MIME
// Sniffing standard defines it (a control character other than
// whitespace and ESC): such bytes never occur in text.
func binaryBytes(b []byte) bool {
	return bytes.ContainsFunc(b, func(r rune) bool {
		return r >= 0 && r <= 0x08 || r == 0x0B || r >= 0x0E && r <= 0x1A || r >= 0x1C && r <= 0x1F
	})
}

// htmlTags open an element a browser would run or render, as the MIME
// Sniffing standard's HTML patterns do; one- and two-letter tags are left
// out, since compressed image data holds "<a " or "<p>" by chance.
var htmlTags = []string{"!doctype html", "html", "head", "body", "script", "iframe", "object", "embed", "svg", "img", "style", "title", "div", "table", "font"}

// htmlMarkup returns the first HTML tag opener found in b ("<script"), or
// "". A tag name must be followed by a space or '>' or '/', as in the MIME
// Sniffing standard's patterns.
func htmlMarkup(b []byte) string {
	for i := bytes.IndexByte(b, '<'); i >= 0; {
		rest := b[i+1:]
		for _, tag := range htmlTags {
			if len(rest) > len(tag) && bytes.EqualFold(rest[:len(tag)], []byte(tag)) && tagEnd(rest[len(tag)]) {
				return "<" + tag
			}
		}
		j := bytes.IndexByte(rest, '<')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return ""
}

func tagEnd(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\f', '\r', '>', '/':
		return true
	}
	return false
}

// pixelsArg parses a positive whole number of pixels.
func pixelsArg(d *caddyfile.Dispenser, dst *int64) error {
	name := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return d.Errf("%s: want a positive number of pixels, got %q", name, s)
	}
	*dst = n
	return nil
}

// limitsImages reports whether the route limits image dimensions.
func (h *Handler) limitsImages() bool {
	return h.MaxImageWidth > 0 || h.MaxImageHeight > 0 || h.MaxImagePixels > 0
}

// imageOverLimits says which of the route's image limits w×h exceeds, or "".
func (h *Handler) imageOverLimits(w, ht int64) string {
	switch {
	case h.MaxImageWidth > 0 && w > h.MaxImageWidth:
		return fmt.Sprintf("wider than this route's limit of %d", h.MaxImageWidth)
	case h.MaxImageHeight > 0 && ht > h.MaxImageHeight:
		return fmt.Sprintf("taller than this route's limit of %d", h.MaxImageHeight)
	case h.MaxImagePixels > 0 && w*ht > h.MaxImagePixels:
		return fmt.Sprintf("more than this route's limit of %d pixels", h.MaxImagePixels)
	}
	return ""
}

// validateContentCheck checks the content-check options.
func (h *Handler) validateContentCheck() error {
	switch {
	case h.MaxImageWidth < 0 || h.MaxImageHeight < 0 || h.MaxImagePixels < 0:
		return fmt.Errorf("max_image_width, max_image_height and max_image_pixels must not be negative")
	case h.DisableContentCheck && h.limitsImages():
		return fmt.Errorf("max_image_width, max_image_height and max_image_pixels need content_check on")
	}
	return nil
}

// provisionContentCheck refuses a storage that cannot read the start of an
// object while the content check is on, at load time rather than at the
// first completion.
func (h *Handler) provisionContentCheck() error {
	if _, ok := h.store.(storage.PrefixReader); !ok && !h.DisableContentCheck {
		return fmt.Errorf("content_check: storage %T cannot read the start of an object; set content_check off", h.store)
	}
	return nil
}
