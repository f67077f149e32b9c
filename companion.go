package caddyupload

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddyupload/caddyupload/storage"
)

// The Companion-compatible routes under /s3 let stock @uppy/aws-s3 (v6
// with companionEndpoint, v5 with endpoint) upload through this module
// unchanged. The uploadId handed to Uppy is the module's own opaque id; the
// key Uppy echoes back is checked against the record, never trusted.
//
// Uppy sends no file size and picks its own part size, so single uploads
// are POST policies with content-length-range min_size..max_size, and part
// URLs carry no signed length: the size policy is enforced at completion
// from what storage holds.

// companionDeclared is what Uppy declares of a file; it never knows the
// size, and may leave the type out.
func companionDeclared(filename, typ string, metadata map[string]string) declared {
	if typ == "" {
		typ = "application/octet-stream"
	}
	return declared{filename: filename, typ: typ, metadata: metadata}
}

type companionParams struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Fields  map[string]string `json:"fields,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	Key     string            `json:"key"`
	ID      string            `json:"id"`
	Expires int64             `json:"expires"`
}

// serveCompanionParams handles GET /s3/params?filename&type&metadata[..]:
// a single upload as a POST policy form.
func (h *Handler) serveCompanionParams(c *call) error {
	q := c.r.URL.Query()
	md := make(map[string]string)
	for k, v := range q {
		if strings.HasPrefix(k, "metadata[") && strings.HasSuffix(k, "]") && len(v) > 0 {
			md[k[len("metadata["):len(k)-1]] = v[0]
		}
	}
	up, e := h.validate(companionDeclared(q.Get("filename"), q.Get("type"), md))
	if e != nil {
		return e
	}
	if !h.store.SupportsPost() {
		// Without a size to sign, only a POST policy lets storage enforce
		// the limit on a single upload.
		return errInvalid("this storage has no POST policy uploads: configure Uppy with shouldUseMultipart: () => true")
	}
	rec, sr, err := h.issue(c, up, storage.KindPost)
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusOK, companionParams{
		Method: sr.Method, URL: sr.URL, Fields: sr.Fields, Headers: sr.Headers,
		Key: rec.Key, ID: rec.ID, Expires: int64(time.Until(sr.Expires).Seconds()),
	})
	return nil
}

type companionCreateRequest struct {
	Filename *string           `json:"filename"`
	Type     *string           `json:"type"`
	Size     *int64            `json:"size"`
	Metadata map[string]string `json:"metadata"`
}

// serveCompanionCreate handles POST /s3/multipart.
func (h *Handler) serveCompanionCreate(c *call) error {
	var req companionCreateRequest
	if e := decodeBody(c.r, &req); e != nil {
		return e
	}
	if req.Filename == nil {
		return errInvalid("filename is required")
	}
	typ := ""
	if req.Type != nil {
		typ = *req.Type
	}
	d := companionDeclared(*req.Filename, typ, req.Metadata)
	if req.Size != nil {
		// A size Uppy happens to send is checked against the policy, but
		// Uppy still picks its own parts: the upload stays unsized.
		d.size = *req.Size
	}
	up, e := h.validate(d)
	if e != nil {
		return e
	}
	up.size = 0
	rec, _, err := h.issue(c, up, storage.KindMultipart)
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusOK, map[string]string{"key": rec.Key, "uploadId": rec.ID})
	return nil
}

// companionRecord loads the caller's record for the uploadId in the path
// and checks the key Uppy echoes.
func (h *Handler) companionRecord(c *call) (*storage.Record, error) {
	rec, err := h.ownRecord(c)
	if err != nil {
		return nil, err
	}
	if key := c.r.URL.Query().Get("key"); key != "" && key != rec.Key {
		return nil, errNotFound()
	}
	return rec, nil
}

// serveCompanionSign handles GET /s3/multipart/{uploadId}/{partNumber}?key=
// and Uppy's older batch form .../batch?partNumbers=1,2.
func (h *Handler) serveCompanionSign(c *call) error {
	rec, err := h.companionRecord(c)
	if err != nil {
		return err
	}
	if err := receivingParts(rec); err != nil {
		return err
	}
	rj, err := h.overLimit(c, rec)
	if err != nil {
		return err
	}
	if rj != nil {
		// The upload can only fail now: end it before more bytes land.
		return h.reject(c.ctx(), rec, rj)
	}
	last := c.r.URL.Path[strings.LastIndexByte(c.r.URL.Path, '/')+1:]
	if last == "batch" {
		urls := make(map[string]string)
		for _, s := range strings.Split(c.r.URL.Query().Get("partNumbers"), ",") {
			n, err := strconv.ParseInt(s, 10, 32)
			if err != nil {
				return errInvalid("partNumbers must be comma-separated integers")
			}
			sr, err := h.signPart(c, rec, int32(n), nil)
			if err != nil {
				return err
			}
			urls[s] = sr.URL
		}
		writeJSON(c.w, http.StatusOK, map[string]any{"presignedUrls": urls})
		return nil
	}
	n, err := strconv.ParseInt(last, 10, 32)
	if err != nil {
		return errInvalid("the part number must be an integer")
	}
	sr, err := h.signPart(c, rec, int32(n), nil)
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"url": sr.URL, "headers": sr.Headers, "expires": int64(time.Until(sr.Expires).Seconds())})
	return nil
}

type companionPart struct {
	PartNumber int32  `json:"PartNumber"`
	ETag       string `json:"ETag"`
	Size       int64  `json:"Size,omitempty"`
}

// serveCompanionList handles GET /s3/multipart/{uploadId}?key=.
func (h *Handler) serveCompanionList(c *call) error {
	rec, err := h.companionRecord(c)
	if err != nil {
		return err
	}
	if e := pendingState(rec, time.Now()); e != nil {
		return e
	}
	parts, err := h.storedParts(c, rec)
	if err != nil {
		return err
	}
	out := make([]companionPart, 0, len(parts))
	for _, p := range parts {
		out = append(out, companionPart{PartNumber: p.Number, ETag: p.ETag, Size: p.Size})
	}
	writeJSON(c.w, http.StatusOK, out)
	return nil
}

type companionCompleteRequest struct {
	Parts []companionPart `json:"parts"`
}

// serveCompanionComplete handles POST /s3/multipart/{uploadId}/complete?key=;
// it also confirms the upload.
func (h *Handler) serveCompanionComplete(c *call) error {
	var req companionCompleteRequest
	if e := decodeBody(c.r, &req); e != nil {
		return e
	}
	rec, err := h.companionRecord(c)
	if err != nil {
		return err
	}
	want := &completeRequest{}
	for _, p := range req.Parts {
		want.Parts = append(want.Parts, partETag{p.PartNumber, p.ETag})
	}
	return h.complete(c, rec, want, func(rec *storage.Record) {
		writeJSON(c.w, http.StatusOK, map[string]any{
			"location": h.basePath(c.r) + "/" + rec.ID + "/download",
			"key":      rec.Key,
			"id":       rec.ID,
			"record":   rec,
		})
	})
}

// serveCompanionAbort handles DELETE /s3/multipart/{uploadId}?key=.
func (h *Handler) serveCompanionAbort(c *call) error {
	rec, err := h.companionRecord(c)
	if err != nil {
		return err
	}
	return h.abort(c, rec)
}

// basePath is the path prefix the handler is mounted under, recovered from
// the original request path (handle_path strips it).
func (h *Handler) basePath(r *http.Request) string {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl == nil {
		return ""
	}
	orig, _ := repl.GetString("http.request.orig_uri.path")
	return strings.TrimSuffix(strings.TrimSuffix(orig, r.URL.Path), "/")
}
