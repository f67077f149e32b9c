package caddyupload

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// link is the URL of a signed link to record id's content, valid until
// expires, relative to the route's /{id}/.
func (v *DownloadVia) link(id string, expires time.Time) string {
	exp := strconv.FormatInt(expires.Unix(), 10)
	return "content?exp=" + exp + "&sig=" + v.linkSig(id, exp)
}

func (v *DownloadVia) linkSig(id, exp string) string {
	mac := hmac.New(sha256.New, v.secret)
	mac.Write([]byte("caddyupload link\n" + id + "\n" + exp))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// checkLink verifies a link's signature and expiry.
func (v *DownloadVia) checkLink(id, exp, sig string, now time.Time) *apiError {
	if !hmac.Equal([]byte(sig), []byte(v.linkSig(id, exp))) {
		return errForbidden("the link is not valid")
	}
	t, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || now.Unix() > t {
		return errForbidden("the link expired")
	}
	return nil
}

// attachment is a Content-Disposition that saves the file under its name.
func attachment(filename string) string {
	return mime.FormatMediaType("attachment", map[string]string{"filename": filename})
}

// serveContent handles GET /{id}/content?exp&sig: the object of a
// confirmed upload, streamed from the bucket, for whoever holds a valid
// link. The record is read on every request, so a link dies with its
// record (deleted, rejected, aborted) at once.
func (h *Handler) serveContent(c *call) error {
	// The link is a bearer credential, valid or not: the access log entry
	// is written without it, errors included.
	w, done := LogWithoutCredentials(c.w, c.r)
	defer done()
	c.w = w
	if err := h.streamContent(c); err != nil {
		h.answerError(w, "content", asAPIError(err))
	}
	return nil
}

// streamContent checks the link and the record and streams the object.
func (h *Handler) streamContent(c *call) error {
	if h.via.Mode != viaLink {
		return errNotFound()
	}
	q := c.r.URL.Query()
	exp := q.Get("exp")
	if e := h.via.checkLink(c.id, exp, q.Get("sig"), time.Now()); e != nil {
		return e
	}
	rec, err := h.anyRecord(c)
	if err != nil {
		return err
	}
	if rec.Status != storage.StatusConfirmed {
		return errExpired("the upload is no longer available")
	}
	if err := h.stillConfirmed(c, rec); err != nil {
		return err
	}
	pr, ok := h.store.(storage.PrefixReader)
	if !ok {
		return errStorage(errors.New("this storage backend cannot stream objects"))
	}
	hd := c.w.Header()
	t, _ := strconv.ParseInt(exp, 10, 64)
	maxAge := max(0, t-time.Now().Unix())
	scope := "private"
	if h.Download == "public" {
		scope = "public"
	}
	// The URL carries its expiry and the object under a key never changes.
	hd.Set("Cache-Control", fmt.Sprintf("%s, max-age=%d, immutable", scope, maxAge))
	hd.Set("Content-Type", rec.Type)
	hd.Set("X-Content-Type-Options", "nosniff")
	// Even an inline document runs no script and reaches nothing of the site.
	hd.Set("Content-Security-Policy", "sandbox; default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'")
	if h.via.inlines != nil && h.via.inlines.allows(rec.Type) && rec.Type != "text/html" {
		hd.Set("Content-Disposition", mime.FormatMediaType("inline", map[string]string{"filename": rec.Filename}))
	} else {
		hd.Set("Content-Disposition", attachment(rec.Filename))
	}
	hd.Set("Accept-Ranges", "bytes")
	etag := ""
	if rec.Internal.ETag != "" {
		etag = `"` + rec.Internal.ETag + `"`
		hd.Set("ETag", etag)
	}
	if etag != "" && etagListed(c.r.Header.Get("If-None-Match"), etag) {
		c.w.WriteHeader(http.StatusNotModified)
		return nil
	}
	rng := c.r.Header.Get("Range")
	if ir := c.r.Header.Get("If-Range"); ir != "" && ir != etag {
		rng = "" // the client's copy is another object: send it all
	}
	if c.r.Method == http.MethodHead && rng == "" {
		hd.Set("Content-Length", strconv.FormatInt(rec.Size, 10))
		return nil
	}
	body, err := pr.ReadRange(c.ctx(), rec.Key, rng, rec.Internal.ETag)
	switch {
	case errors.Is(err, storage.ErrInvalidRange):
		hd.Set("Content-Range", "bytes */"+strconv.FormatInt(rec.Size, 10))
		return &apiError{Status: http.StatusRequestedRangeNotSatisfiable, Code: "invalid_range", Message: "the range is outside the file"}
	case errors.Is(err, storage.ErrConflict):
		return h.revoke(c.ctx(), rec, "the object was replaced after confirmation")
	case errors.Is(err, storage.ErrNotFound):
		return errExpired("the object is no longer in storage")
	case err != nil:
		return errStorage(err)
	}
	defer body.Body.Close()
	hd.Set("Content-Length", strconv.FormatInt(body.Length, 10))
	status := http.StatusOK
	if body.ContentRange != "" {
		hd.Set("Content-Range", body.ContentRange)
		status = http.StatusPartialContent
	}
	c.w.WriteHeader(status)
	if c.r.Method != http.MethodHead {
		// The status line is out: a failure from here on can only cut the
		// body short, which the client sees against Content-Length.
		_, _ = io.Copy(c.w, body.Body)
	}
	return nil
}

// etagListed reports whether an If-None-Match value names etag (or *).
func etagListed(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}
