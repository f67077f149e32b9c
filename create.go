package caddyupload

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

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
	ID        string            `json:"id"`
	Key       string            `json:"key"`
	Status    storage.Status    `json:"status"`
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

// upload is a validated request to create an upload.
type upload struct {
	filename string
	size     int64 // 0 = not known yet (POST policy range, Uppy multipart)
	mimeType string
	ext      string
	sha256   string
	metadata map[string]string
}

// serveCreate handles POST /: policy, key, pending record, presigned request.
func (h *Handler) serveCreate(w http.ResponseWriter, r *http.Request, who identity, _ string) error {
	var req createRequest
	if e := decodeBody(w, r, &req); e != nil {
		return e
	}
	if req.Filename == nil || req.Size == nil || req.Type == nil {
		return errInvalid("filename, size and type are required")
	}
	up := upload{filename: *req.Filename, size: *req.Size, metadata: req.Metadata}
	if e := checkFilename(up.filename); e != nil {
		return e
	}
	if up.size <= 0 {
		return errInvalid("size must be a positive integer")
	}
	if req.SHA256 != nil {
		if !isHexSHA256(*req.SHA256) {
			return errInvalid("sha256 must be 64 hexadecimal digits")
		}
		up.sha256 = strings.ToLower(*req.SHA256)
	}
	if e := checkMetadata(up.metadata); e != nil {
		return e
	}
	if e := h.checkType(*req.Type, &up); e != nil {
		return e
	}
	if up.size > h.MaxSize {
		return errTooLarge(fmt.Sprintf("the file is larger than this route's limit of %d bytes", h.MaxSize))
	}
	if up.size < h.MinSize {
		return errInvalid(fmt.Sprintf("the file is smaller than this route's minimum of %d bytes", h.MinSize))
	}

	method := storage.MethodPut
	switch {
	case up.size > h.MultipartThreshold:
		method = storage.MethodMultipart
	case h.Method == "post":
		method = storage.MethodPost
	}
	rec := h.newRecord(who, up, method)
	resp := createResponse{ID: rec.ID, Key: rec.Key, Status: rec.Status}

	switch method {
	case storage.MethodMultipart:
		if err := h.createMultipart(r, rec); err != nil {
			return err
		}
		resp.Method = http.MethodPut
		resp.ExpiresAt = rec.Internal.ExpiresAt
		resp.Multipart = &multipartInfo{PartSize: rec.Internal.PartSize, PartCount: rec.Internal.PartCount}
	default:
		sr, err := h.presignSingle(r, rec)
		if err != nil {
			return errStorage(err)
		}
		resp.Method, resp.URL, resp.Headers, resp.Fields, resp.ExpiresAt = sr.Method, sr.URL, sr.Headers, sr.Fields, sr.Expires
	}

	// The record is on disk before the URL leaves the proxy.
	if err := h.ledger.Create(r.Context(), rec); err != nil {
		if rec.Internal.UploadID != "" {
			_ = h.store.AbortMultipart(r.Context(), rec.Key, rec.Internal.UploadID)
		}
		if errors.Is(err, storage.ErrConflict) {
			return errLedger(fmt.Errorf("key collision: %w", err))
		}
		return errLedger(err)
	}
	writeJSON(w, http.StatusCreated, resp)
	return nil
}

// checkType validates the declared type against syntax, the route's
// allowed types and the filename's extension, and fills up.mimeType/ext.
func (h *Handler) checkType(declared string, up *upload) *apiError {
	mt, ok := parseMediaType(declared)
	if !ok {
		return errInvalid("type is not a valid media type")
	}
	if !h.types.allows(mt) {
		return errUnsupportedType(fmt.Sprintf("type %s is not allowed on this route", mt))
	}
	ext, ok := keyExtension(mt, fileExtension(up.filename))
	if !ok {
		return errUnsupportedType(fmt.Sprintf("the file's extension does not match type %s", mt))
	}
	up.mimeType, up.ext = mt, ext
	return nil
}

// newRecord builds the pending record of an upload; the key is chosen
// here, from the route's template, and never by the client.
func (h *Handler) newRecord(who identity, up upload, method string) *storage.Record {
	now := time.Now().UTC()
	id := newID()
	key := h.keys.render(keyVars{UUID: uuid.Must(uuid.NewV7()).String(), ID: id, Ext: up.ext, Subject: who.Subject, Claims: who.Claims, Now: now})
	rec := &storage.Record{
		ID:        id,
		Key:       key,
		Status:    storage.StatusPending,
		Filename:  up.filename,
		Size:      up.size,
		Type:      up.mimeType,
		SHA256:    up.sha256,
		Metadata:  up.metadata,
		CreatedAt: now,
		Internal: storage.RecordInternal{
			Subject:   who.Subject,
			Store:     h.store.ID(),
			Route:     h.Name,
			Method:    method,
			ExpiresAt: now.Add(time.Duration(h.PendingTTL)),
			UpdatedAt: now,
			Notify:    h.Webhook != nil,
		},
	}
	if up.size == 0 {
		rec.Internal.MaxSize = h.MaxSize
	}
	return rec
}

// presignSingle signs the PUT or POST that uploads rec's object.
func (h *Handler) presignSingle(r *http.Request, rec *storage.Record) (storage.SignedRequest, error) {
	origin := h.origin(r)
	ttl := time.Duration(h.URLTTL)
	if rec.Internal.Method == storage.MethodPost {
		in := storage.PostInput{Key: rec.Key, MinSize: rec.Size, MaxSize: rec.Size, ContentType: rec.Type, TTL: ttl}
		if rec.Size == 0 {
			in.MinSize, in.MaxSize = h.MinSize, h.MaxSize
		}
		return h.store.PresignPost(r.Context(), in, origin)
	}
	in := storage.PutInput{Key: rec.Key, Size: rec.Size, ContentType: rec.Type, TTL: ttl}
	if rec.SHA256 != "" {
		in.SHA256, _ = hex.DecodeString(rec.SHA256)
	}
	return h.store.PresignPut(r.Context(), in, origin)
}

// origin is the scheme and host presigned URLs must use: the request's own
// for stores reached through this site (the embedded server), else none.
func (h *Handler) origin(r *http.Request) storage.Origin {
	if sameSite, ok := h.store.(interface{ ServedBySite() bool }); ok && sameSite.ServedBySite() {
		return storage.OriginFromRequest(r)
	}
	return storage.Origin{}
}
