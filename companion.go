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

// routeCompanion maps the paths under /s3 to operations.
func routeCompanion(r *http.Request, seg []string) (operation, *apiError) {
	switch {
	case len(seg) == 1 && seg[0] == "params":
		if r.Method == http.MethodGet {
			return operation{name: "companion_params", serve: (*Handler).serveCompanionParams}, nil
		}
	case len(seg) == 1 && seg[0] == "multipart":
		if r.Method == http.MethodPost {
			return operation{name: "companion_create", serve: (*Handler).serveCompanionCreate}, nil
		}
	case len(seg) >= 2 && seg[0] == "multipart" && !validID(seg[1]):
		return operation{}, errNotFound()
	case len(seg) == 2 && seg[0] == "multipart":
		switch r.Method {
		case http.MethodGet:
			return operation{name: "companion_list", id: seg[1], readOnly: true, serve: (*Handler).serveCompanionList}, nil
		case http.MethodDelete:
			return operation{name: "companion_abort", id: seg[1], serve: (*Handler).serveCompanionAbort}, nil
		}
	case len(seg) == 3 && seg[0] == "multipart" && seg[2] == "complete":
		if r.Method == http.MethodPost {
			return operation{name: "companion_complete", id: seg[1], serve: (*Handler).serveCompanionComplete}, nil
		}
	case len(seg) == 3 && seg[0] == "multipart":
		if r.Method == http.MethodGet {
			return operation{name: "companion_sign", id: seg[1], serve: (*Handler).serveCompanionSign}, nil
		}
	default:
		return operation{}, errNotFound()
	}
	return operation{}, errMethodNotAllowed()
}

// companionUpload validates what Uppy declares of a file; it never knows
// the size.
func (h *Handler) companionUpload(filename, typ string, metadata map[string]string) (upload, *apiError) {
	up := upload{filename: filename, metadata: metadata}
	if e := checkFilename(filename); e != nil {
		return up, e
	}
	if e := checkMetadata(metadata); e != nil {
		return up, e
	}
	if typ == "" {
		typ = "application/octet-stream"
	}
	if e := h.checkType(typ, &up); e != nil {
		return up, e
	}
	return up, nil
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
func (h *Handler) serveCompanionParams(w http.ResponseWriter, r *http.Request, who identity, _ string) error {
	q := r.URL.Query()
	md := make(map[string]string)
	for k, v := range q {
		if strings.HasPrefix(k, "metadata[") && strings.HasSuffix(k, "]") && len(v) > 0 {
			md[k[len("metadata["):len(k)-1]] = v[0]
		}
	}
	up, e := h.companionUpload(q.Get("filename"), q.Get("type"), md)
	if e != nil {
		return e
	}
	if !h.store.SupportsPost() {
		// Without a size to sign, only a POST policy lets storage enforce
		// the limit on a single upload.
		return errInvalid("this storage has no POST policy uploads: configure Uppy with shouldUseMultipart: () => true")
	}
	rec := h.newRecord(who, up, storage.MethodPost)
	sr, err := h.presignSingle(r, rec)
	if err != nil {
		return errStorage(err)
	}
	if err := h.ledger.Create(r.Context(), rec); err != nil {
		return errLedger(err)
	}
	writeJSON(w, http.StatusOK, companionParams{
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
func (h *Handler) serveCompanionCreate(w http.ResponseWriter, r *http.Request, who identity, _ string) error {
	var req companionCreateRequest
	if e := decodeBody(w, r, &req); e != nil {
		return e
	}
	if req.Filename == nil {
		return errInvalid("filename is required")
	}
	typ := ""
	if req.Type != nil {
		typ = *req.Type
	}
	up, e := h.companionUpload(*req.Filename, typ, req.Metadata)
	if e != nil {
		return e
	}
	if req.Size != nil && *req.Size > h.MaxSize {
		return errTooLarge("the file is larger than this route's limit")
	}
	rec := h.newRecord(who, up, storage.MethodMultipart)
	if err := h.createMultipart(r, rec); err != nil {
		return err
	}
	if err := h.ledger.Create(r.Context(), rec); err != nil {
		_ = h.store.AbortMultipart(r.Context(), rec.Key, rec.Internal.UploadID)
		return errLedger(err)
	}
	writeJSON(w, http.StatusOK, map[string]string{"key": rec.Key, "uploadId": rec.ID})
	return nil
}

// companionRecord loads the caller's record for uploadId and checks the
// key Uppy echoes.
func (h *Handler) companionRecord(r *http.Request, who identity, id string) (*storage.Record, error) {
	rec, err := h.ownRecord(r, who, id)
	if err != nil {
		return nil, err
	}
	if key := r.URL.Query().Get("key"); key != "" && key != rec.Key {
		return nil, errNotFound()
	}
	return rec, nil
}

// serveCompanionSign handles GET /s3/multipart/{uploadId}/{partNumber}?key=
// and Uppy's older batch form .../batch?partNumbers=1,2.
func (h *Handler) serveCompanionSign(w http.ResponseWriter, r *http.Request, who identity, id string) error {
	rec, err := h.companionRecord(r, who, id)
	if err != nil {
		return err
	}
	if rec.Internal.Method != storage.MethodMultipart {
		return errInvalid("this upload is not multipart")
	}
	if e := pendingState(rec, time.Now()); e != nil {
		return e
	}
	last := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	if last == "batch" {
		urls := make(map[string]string)
		for _, s := range strings.Split(r.URL.Query().Get("partNumbers"), ",") {
			n, err := strconv.ParseInt(s, 10, 32)
			if err != nil {
				return errInvalid("partNumbers must be comma-separated integers")
			}
			sr, err := h.signPart(r, rec, int32(n))
			if err != nil {
				return err
			}
			urls[s] = sr.URL
		}
		writeJSON(w, http.StatusOK, map[string]any{"presignedUrls": urls})
		return nil
	}
	n, err := strconv.ParseInt(last, 10, 32)
	if err != nil {
		return errInvalid("the part number must be an integer")
	}
	sr, err := h.signPart(r, rec, int32(n))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"url": sr.URL, "headers": sr.Headers, "expires": int64(time.Until(sr.Expires).Seconds())})
	return nil
}

type companionPart struct {
	PartNumber int32  `json:"PartNumber"`
	ETag       string `json:"ETag"`
	Size       int64  `json:"Size,omitempty"`
}

// serveCompanionList handles GET /s3/multipart/{uploadId}?key=.
func (h *Handler) serveCompanionList(w http.ResponseWriter, r *http.Request, who identity, id string) error {
	rec, err := h.companionRecord(r, who, id)
	if err != nil {
		return err
	}
	if e := pendingState(rec, time.Now()); e != nil {
		return e
	}
	parts, err := h.storedParts(r, rec)
	if err != nil {
		return err
	}
	out := make([]companionPart, 0, len(parts))
	for _, p := range parts {
		out = append(out, companionPart{PartNumber: p.Number, ETag: p.ETag, Size: p.Size})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

type companionCompleteRequest struct {
	Parts []companionPart `json:"parts"`
}

// serveCompanionComplete handles POST /s3/multipart/{uploadId}/complete?key=;
// it also confirms the upload.
func (h *Handler) serveCompanionComplete(w http.ResponseWriter, r *http.Request, who identity, id string) error {
	var req companionCompleteRequest
	if e := decodeBody(w, r, &req); e != nil {
		return e
	}
	rec, err := h.companionRecord(r, who, id)
	if err != nil {
		return err
	}
	want := &completeRequest{}
	for _, p := range req.Parts {
		want.Parts = append(want.Parts, partETag{p.PartNumber, p.ETag})
	}
	return h.finish(w, r, rec, want, func(rec *storage.Record) {
		writeJSON(w, http.StatusOK, map[string]any{
			"location": h.basePath(r) + "/" + rec.ID + "/download",
			"key":      rec.Key,
			"id":       rec.ID,
			"record":   rec,
		})
	})
}

// serveCompanionAbort handles DELETE /s3/multipart/{uploadId}?key=.
func (h *Handler) serveCompanionAbort(w http.ResponseWriter, r *http.Request, who identity, id string) error {
	rec, err := h.companionRecord(r, who, id)
	if err != nil {
		return err
	}
	return h.abort(w, r, rec)
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
