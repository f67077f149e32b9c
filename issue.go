package caddyupload

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/caddyupload/caddyupload/storage"
)

// declared is what a client says of a file it wants to upload, before any
// check. Size 0 means not known: Uppy's Companion routes send none.
type declared struct {
	filename string
	size     int64
	typ      string
	sha256   string // "" = none
	metadata map[string]string
}

// upload is a declared file that passed the route's policy.
type upload struct {
	filename string
	size     int64 // 0 = not known yet (POST policy range, Uppy multipart)
	mimeType string
	ext      string
	sha256   string // lowercase hex
	metadata map[string]string
}

// validate applies the route's policy to what a client declared; every
// way of creating an upload goes through it.
func (h *Handler) validate(d declared) (upload, *apiError) {
	up := upload{filename: d.filename, size: d.size, metadata: d.metadata}
	if e := checkFilename(d.filename); e != nil {
		return up, e
	}
	if d.sha256 != "" {
		if !isHexSHA256(d.sha256) {
			return up, errInvalid("sha256 must be 64 hexadecimal digits")
		}
		up.sha256 = strings.ToLower(d.sha256)
	}
	if e := checkMetadata(d.metadata); e != nil {
		return up, e
	}
	if e := h.checkType(d.typ, &up); e != nil {
		return up, e
	}
	switch {
	case d.size < 0:
		return up, errInvalid("size must be a positive integer")
	case d.size > h.MaxSize:
		return up, errTooLarge(fmt.Sprintf("the file is larger than this route's limit of %d bytes", h.MaxSize))
	case d.size > 0 && d.size < h.MinSize:
		return up, errInvalid(fmt.Sprintf("the file is smaller than this route's minimum of %d bytes", h.MinSize))
	}
	return up, nil
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

// issue creates an upload of up of the given kind: it picks the key, starts
// the multipart upload or presigns the single request, and writes the
// pending record within the route's quota, which is on disk before anything
// leaves the proxy.
// Nothing is left in storage when the record cannot be written. Multipart
// uploads get no request: their parts are signed on demand.
func (h *Handler) issue(c *call, up upload, kind string) (*storage.Record, storage.SignedRequest, error) {
	if e := h.checkChecksum(up, kind); e != nil {
		return nil, storage.SignedRequest{}, e
	}
	rec := h.newRecord(c.who, up, kind)
	var sr storage.SignedRequest
	var err error
	if kind == storage.KindMultipart {
		// Storage is asked first here: what cannot fit the quota is
		// refused before that.
		if err := h.precheckQuota(c.ctx(), rec); err != nil {
			return nil, sr, err
		}
		err = h.createMultipart(c, rec)
	} else if sr, err = h.presignSingle(c, rec); err != nil {
		err = errStorage(err)
	}
	if err != nil {
		return nil, sr, err
	}
	if err := h.createRecord(c.ctx(), rec); err != nil {
		if rec.Internal.UploadID != "" {
			_ = h.store.AbortMultipart(c.ctx(), rec.Key, rec.Internal.UploadID)
		}
		if errors.Is(err, storage.ErrQuota) {
			return nil, sr, h.quotaAnswer(err)
		}
		if errors.Is(err, storage.ErrConflict) {
			err = fmt.Errorf("key collision: %w", err)
		}
		return nil, sr, errLedger(err)
	}
	h.metrics.uploadCreated(kind)
	return rec, sr, nil
}

// checkChecksum applies the route's checksum rules to a new upload. Only a
// single PUT has the file's checksum signed, so that storage itself refuses
// other bytes: a sha256 that would go unverified is refused rather than
// passed on to the application. Multipart uploads are checked part by part
// (signParts).
func (h *Handler) checkChecksum(up upload, kind string) *apiError {
	switch {
	case up.sha256 != "" && kind != storage.KindPut:
		return errInvalid("sha256 is verified for single PUT uploads only: leave it out for files over multipart_threshold (declare each part's sha256 when signing parts) or on routes with method post")
	case h.RequireChecksum && up.sha256 == "" && kind == storage.KindPut:
		return errInvalid("this route requires the file's sha256")
	}
	return nil
}

// newRecord builds the pending record of an upload; the key is chosen
// here, from the route's template, and never by the client.
func (h *Handler) newRecord(who identity, up upload, kind string) *storage.Record {
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
			Source:    who.Source,
			Store:     h.store.ID(),
			Route:     h.Name,
			Kind:      kind,
			ExpiresAt: now.Add(time.Duration(h.PendingTTL)),
			UpdatedAt: now,
			Notify:    h.Webhook != nil,
		},
	}
	if up.size == 0 {
		// The size policy of an upload created without a size is checked
		// against what storage holds; it travels with the record.
		rec.Internal.MinSize, rec.Internal.MaxSize = h.MinSize, h.MaxSize
		if kind == storage.KindPost {
			// S3 takes at most 5 GiB in one POST; larger files need
			// multipart, which Uppy picks by size.
			rec.Internal.MaxSize = min(rec.Internal.MaxSize, maxSinglePut)
		}
	}
	return rec
}

// presignSingle signs the PUT or POST that uploads rec's object.
func (h *Handler) presignSingle(c *call, rec *storage.Record) (storage.SignedRequest, error) {
	origin := h.origin(c.r)
	ttl := time.Duration(h.URLTTL)
	if rec.Internal.Kind == storage.KindPost {
		in := storage.PostInput{Key: rec.Key, MinSize: rec.Size, MaxSize: rec.Size, ContentType: rec.Type, TTL: ttl}
		if rec.Size == 0 {
			in.MinSize, in.MaxSize = rec.Internal.MinSize, rec.Internal.MaxSize
		}
		return h.store.PresignPost(c.ctx(), in, origin)
	}
	// Create-only: the URL can never replace the object once it exists.
	in := storage.PutInput{Key: rec.Key, Size: rec.Size, ContentType: rec.Type, TTL: ttl, IfNoneMatch: true}
	if rec.SHA256 != "" {
		in.SHA256, _ = hex.DecodeString(rec.SHA256)
	}
	return h.store.PresignPut(c.ctx(), in, origin)
}
