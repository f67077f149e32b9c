package caddyupload

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// serveComplete handles POST /{id}/complete.
func (h *Handler) serveComplete(w http.ResponseWriter, r *http.Request, who identity, id string) error {
	var want *completeRequest
	if r.ContentLength != 0 {
		want = new(completeRequest)
		if e := decodeBody(w, r, want); e != nil {
			return e
		}
	}
	rec, err := h.ownRecord(r, who, id)
	if err != nil {
		return err
	}
	return h.finish(w, r, rec, want, func(rec *storage.Record) { writeJSON(w, http.StatusOK, rec) })
}

type completeByKeyRequest struct {
	Key *string `json:"key"`
}

// serveCompleteByKey handles POST /complete {"key"}: the confirmation of a
// single upload made through /s3/params, where the client knows the key.
func (h *Handler) serveCompleteByKey(w http.ResponseWriter, r *http.Request, who identity, _ string) error {
	var req completeByKeyRequest
	if e := decodeBody(w, r, &req); e != nil {
		return e
	}
	if req.Key == nil || *req.Key == "" {
		return errInvalid("key is required")
	}
	rec, err := h.ledger.GetByKey(r.Context(), h.store.ID(), *req.Key)
	if errors.Is(err, storage.ErrNotFound) {
		return errNotFound()
	}
	if err != nil {
		return errLedger(err)
	}
	if rec.Internal.Subject != who.Subject {
		return errNotFound()
	}
	return h.finish(w, r, rec, nil, func(rec *storage.Record) { writeJSON(w, http.StatusOK, rec) })
}

// finish verifies rec's object in storage, hands it to the application
// when the route forwards, confirms the record and answers. It is
// idempotent: a confirmed record is answered as it is.
func (h *Handler) finish(w http.ResponseWriter, r *http.Request, rec *storage.Record, want *completeRequest, answer func(*storage.Record)) error {
	if rec.Status == storage.StatusConfirmed {
		answer(rec)
		return nil
	}
	info, err := h.verifyStored(r, rec, want)
	if err != nil {
		return err
	}
	if h.Forward != nil {
		return h.forward(w, r, rec, info)
	}
	out, err := h.confirm(r, rec, info)
	if err != nil {
		return err
	}
	answer(out)
	return nil
}

// verifyStored checks that rec's object is in storage as declared,
// assembling a multipart upload first; a mismatch deletes the object and
// rejects the record.
func (h *Handler) verifyStored(r *http.Request, rec *storage.Record, want *completeRequest) (storage.ObjectInfo, error) {
	var info storage.ObjectInfo
	if e := pendingState(rec, time.Now()); e != nil {
		return info, e
	}
	if rec.Internal.Method == storage.MethodMultipart {
		if err := h.assemble(r, rec, want); err != nil {
			return info, err
		}
	}
	info, err := h.store.Head(r.Context(), rec.Key)
	if errors.Is(err, storage.ErrNotFound) {
		return info, errNotUploaded("the object is not in storage yet")
	}
	if err != nil {
		return info, errStorage(err)
	}
	if reason := h.mismatch(rec, info); reason != "" {
		return info, h.reject(r, rec, reason, errVerification)
	}
	return info, nil
}

// mismatch says how the stored object differs from the record, or "".
func (h *Handler) mismatch(rec *storage.Record, info storage.ObjectInfo) string {
	switch {
	case rec.Size > 0 && info.Size != rec.Size:
		return fmt.Sprintf("the object has %d bytes, not the declared %d", info.Size, rec.Size)
	case rec.Size == 0 && (info.Size < 1 || info.Size > rec.Internal.MaxSize):
		return fmt.Sprintf("the object has %d bytes, outside this route's limits", info.Size)
	}
	if rec.SHA256 != "" && len(info.SHA256) == 32 && hex.EncodeToString(info.SHA256) != rec.SHA256 {
		return "the object's SHA-256 differs from the declared one"
	}
	stored, _ := parseMediaType(info.ContentType)
	if stored != rec.Type {
		return fmt.Sprintf("the object's type is %q, not the declared %s", strings.ToValidUTF8(info.ContentType, ""), rec.Type)
	}
	return ""
}

// confirm marks rec confirmed; the write is on disk before 200 is sent.
func (h *Handler) confirm(r *http.Request, rec *storage.Record, info storage.ObjectInfo) (*storage.Record, error) {
	now := time.Now().UTC()
	out, err := h.ledger.Update(r.Context(), rec.ID, func(cur *storage.Record) error {
		if cur.Status == storage.StatusConfirmed {
			return nil
		}
		if e := pendingState(cur, now); e != nil {
			return e
		}
		cur.Status = storage.StatusConfirmed
		cur.Size = info.Size
		cur.ConfirmedAt = &now
		cur.Internal.UpdatedAt = now
		return nil
	})
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			return nil, ae
		}
		return nil, errLedger(err)
	}
	h.notifyWebhook()
	return out, nil
}

// reject deletes rec's object, marks the record rejected and returns the
// error the client gets (made by mkErr from reason).
func (h *Handler) reject(r *http.Request, rec *storage.Record, reason string, mkErr func(string) *apiError) error {
	if err := h.removeObject(r, rec); err != nil {
		return errStorage(err)
	}
	now := time.Now().UTC()
	_, err := h.ledger.Update(r.Context(), rec.ID, func(cur *storage.Record) error {
		if cur.Status != storage.StatusPending {
			return nil
		}
		cur.Status = storage.StatusRejected
		cur.Internal.Reason = reason
		cur.Internal.UpdatedAt = now
		return nil
	})
	if err != nil {
		return errLedger(err)
	}
	h.notifyWebhook()
	return mkErr(reason)
}
