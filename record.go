package caddyupload

import (
	"errors"
	"mime"
	"net/http"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// ownRecord loads record id for its owner. A record of another subject, or
// of another store, answers exactly like a missing one.
func (h *Handler) ownRecord(r *http.Request, who identity, id string) (*storage.Record, error) {
	rec, err := h.anyRecord(r, id)
	if err != nil {
		return nil, err
	}
	if rec.Internal.Subject != who.Subject {
		return nil, errNotFound()
	}
	return rec, nil
}

// anyRecord loads record id of this route's store whoever owns it.
func (h *Handler) anyRecord(r *http.Request, id string) (*storage.Record, error) {
	rec, err := h.ledger.Get(r.Context(), id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errNotFound()
	}
	if err != nil {
		return nil, errLedger(err)
	}
	if rec.Internal.Store != h.store.ID() {
		return nil, errNotFound()
	}
	return rec, nil
}

// pendingState refuses operations that need a live pending record.
func pendingState(rec *storage.Record, now time.Time) *apiError {
	switch rec.Status {
	case storage.StatusPending:
		if now.After(rec.Internal.ExpiresAt) {
			return errExpired("the upload expired")
		}
		return nil
	case storage.StatusExpired:
		return errExpired("the upload expired")
	case storage.StatusAborted:
		return errExpired("the upload was aborted")
	case storage.StatusRejected:
		return errVerification("the upload was rejected: " + rec.Internal.Reason)
	}
	return errInvalid("the upload is already " + string(rec.Status))
}

// recordView is a record as GET /{id} shows it: a pending multipart
// upload also tells its part layout, so a client can resume from the
// record alone.
type recordView struct {
	*storage.Record
	Multipart *multipartInfo `json:"multipart,omitempty"`
}

// serveGet handles GET /{id}.
func (h *Handler) serveGet(w http.ResponseWriter, r *http.Request, who identity, id string) error {
	rec, err := h.ownRecord(r, who, id)
	if err != nil {
		return err
	}
	view := recordView{Record: rec}
	if rec.Status == storage.StatusPending && rec.Internal.PartCount > 0 {
		view.Multipart = &multipartInfo{PartSize: rec.Internal.PartSize, PartCount: rec.Internal.PartCount}
	}
	writeJSON(w, http.StatusOK, view)
	return nil
}

// serveAbort handles DELETE /{id}: the record is marked aborted first, so
// no complete can confirm it any more, then the object or multipart
// upload is removed. A retry after a storage failure removes it again.
func (h *Handler) serveAbort(w http.ResponseWriter, r *http.Request, who identity, id string) error {
	rec, err := h.ownRecord(r, who, id)
	if err != nil {
		return err
	}
	return h.abort(w, r, rec)
}

// abort marks rec aborted and removes what storage holds of it.
func (h *Handler) abort(w http.ResponseWriter, r *http.Request, rec *storage.Record) error {
	var err error
	switch rec.Status {
	case storage.StatusPending, storage.StatusConfirmed:
		rec, err = h.ledger.Update(r.Context(), rec.ID, func(cur *storage.Record) error {
			if cur.Status == storage.StatusPending || cur.Status == storage.StatusConfirmed {
				cur.Status = storage.StatusAborted
				cur.Internal.UpdatedAt = time.Now().UTC()
			}
			return nil
		})
		if err != nil {
			return errLedger(err)
		}
		h.notifyWebhook()
	}
	if rec.Status == storage.StatusAborted {
		if err := h.removeObject(r, rec); err != nil {
			return errStorage(err)
		}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// removeObject deletes rec's object and aborts its multipart upload.
func (h *Handler) removeObject(r *http.Request, rec *storage.Record) error {
	if rec.Internal.UploadID != "" {
		if err := h.store.AbortMultipart(r.Context(), rec.Key, rec.Internal.UploadID); err != nil {
			return err
		}
	}
	return h.store.Delete(r.Context(), rec.Key)
}

// serveDownload handles GET /{id}/download: a redirect to a short-lived
// presigned GET that names the original file safely.
func (h *Handler) serveDownload(w http.ResponseWriter, r *http.Request, who identity, id string) error {
	var rec *storage.Record
	var err error
	if h.Download == "owner" {
		rec, err = h.ownRecord(r, who, id)
	} else {
		rec, err = h.anyRecord(r, id)
	}
	if err != nil {
		return err
	}
	if rec.Status != storage.StatusConfirmed {
		if rec.Status == storage.StatusPending {
			return errNotUploaded("the upload is not confirmed yet")
		}
		return pendingState(rec, time.Now())
	}
	sr, err := h.store.PresignGet(r.Context(), storage.GetInput{
		Key:                rec.Key,
		ContentType:        rec.Type,
		ContentDisposition: mime.FormatMediaType("attachment", map[string]string{"filename": rec.Filename}),
		TTL:                time.Duration(h.DownloadTTL),
	}, h.origin(r))
	if err != nil {
		return errStorage(err)
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, sr.URL, http.StatusFound)
	return nil
}
