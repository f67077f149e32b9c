package caddyupload

import (
	"net/http"
	"strconv"
	"time"

	"github.com/caddyupload/caddyupload/internal/jsonw"
	"github.com/caddyupload/caddyupload/storage"
)

type createRequest struct {
	Filename *string           `json:"filename"`
	Size     *int64            `json:"size"`
	Type     *string           `json:"type"`
	SHA256   *string           `json:"sha256"`
	Metadata map[string]string `json:"metadata"`
}

type createResponse struct {
	ID     string         `json:"id"`
	Key    string         `json:"key"`
	Status storage.Status `json:"status"`
	// Method is the HTTP method of the upload request (PUT for each part
	// of a multipart upload).
	Method    string            `json:"method"`
	URL       string            `json:"url,omitempty"`
	Headers   map[string]string `json:"headers,omitempty"`
	Fields    map[string]string `json:"fields,omitempty"`
	ExpiresAt time.Time         `json:"expires_at"`
	Multipart *multipartInfo    `json:"multipart,omitempty"`
}

type multipartInfo struct {
	PartSize  int64 `json:"part_size"`
	PartCount int32 `json:"part_count"`
}

// serveCreate handles POST /: the native API, where the client declares
// the file's size, so that storage can enforce it exactly.
func (h *Handler) serveCreate(c *call) error {
	var req createRequest
	if e := decodeBody(c.r, &req); e != nil {
		return e
	}
	if req.Filename == nil || req.Size == nil || req.Type == nil {
		return errInvalid("filename, size and type are required")
	}
	if *req.Size <= 0 {
		return errInvalid("size must be a positive integer")
	}
	d := declared{filename: *req.Filename, size: *req.Size, typ: *req.Type, metadata: req.Metadata}
	if req.SHA256 != nil {
		if *req.SHA256 == "" {
			return errInvalid("sha256 must be 64 hexadecimal digits")
		}
		d.sha256 = *req.SHA256
	}
	up, e := h.validate(d)
	if e != nil {
		return e
	}
	kind := storage.KindPut
	switch {
	case up.size > h.MultipartThreshold:
		kind = storage.KindMultipart
	case h.Method == "post":
		kind = storage.KindPost
	}
	rec, sr, err := h.issue(c, up, kind)
	if err != nil {
		return err
	}
	resp := createResponse{ID: rec.ID, Key: rec.Key, Status: rec.Status}
	if kind == storage.KindMultipart {
		resp.Method = http.MethodPut
		resp.ExpiresAt = rec.Internal.ExpiresAt
		resp.Multipart = &multipartInfo{PartSize: rec.Internal.PartSize, PartCount: rec.Internal.PartCount}
	} else {
		resp.Method, resp.URL, resp.Headers, resp.Fields, resp.ExpiresAt = sr.Method, sr.URL, sr.Headers, sr.Fields, sr.Expires
	}
	writeJSON(c.w, http.StatusCreated, &resp)
	return nil
}

// appendJSON appends r as encoding/json writes it, without reflection:
// every create answers with one (TestCreateResponseJSON holds the two
// equal).
func (r *createResponse) appendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = jsonw.AppendStringNoHTML(b, r.ID)
	b = append(b, `,"key":`...)
	b = jsonw.AppendStringNoHTML(b, r.Key)
	b = append(b, `,"status":`...)
	b = jsonw.AppendStringNoHTML(b, string(r.Status))
	b = append(b, `,"method":`...)
	b = jsonw.AppendStringNoHTML(b, r.Method)
	if r.URL != "" {
		b = append(b, `,"url":`...)
		b = jsonw.AppendStringNoHTML(b, r.URL)
	}
	if len(r.Headers) > 0 {
		b = append(b, `,"headers":`...)
		b = jsonw.AppendStringMapNoHTML(b, r.Headers)
	}
	if len(r.Fields) > 0 {
		b = append(b, `,"fields":`...)
		b = jsonw.AppendStringMapNoHTML(b, r.Fields)
	}
	b = append(b, `,"expires_at":`...)
	b = jsonw.AppendTime(b, r.ExpiresAt)
	if m := r.Multipart; m != nil {
		b = append(b, `,"multipart":{"part_size":`...)
		b = strconv.AppendInt(b, m.PartSize, 10)
		b = append(b, `,"part_count":`...)
		b = strconv.AppendInt(b, int64(m.PartCount), 10)
		b = append(b, '}')
	}
	return append(b, "}\n"...)
}
