package caddyupload

import (
	"errors"
	"net/http"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// ownRecord loads the record named in c's path for its owner. A record of
// another subject, or of another store, answers exactly like a missing one.
func (h *Handler) ownRecord(c *call) (*storage.Record, error) {
	rec, err := h.anyRecord(c)
	if err != nil {
		return nil, err
	}
	if !h.owns(c.who, rec) {
		return nil, errNotFound()
	}
	return rec, nil
}

// owns reports whether rec belongs to who on this route. Records written
// before subjects carried their source match by subject alone.
func (h *Handler) owns(who identity, rec *storage.Record) bool {
	return h.routes(rec) && rec.Internal.Subject == who.Subject &&
		(rec.Internal.Source == "" || rec.Internal.Source == who.Source)
}

// routes reports whether rec was created by this route (and so under its
// policy) in its store: no other route may act on it.
func (h *Handler) routes(rec *storage.Record) bool {
	return rec.Internal.Route == h.Name && rec.Internal.Store == h.store.ID()
}

// anyRecord loads the record named in c's path, of this route, whoever
// owns it.
func (h *Handler) anyRecord(c *call) (*storage.Record, error) {
	rec, err := h.ledger.Get(c.ctx(), c.id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errNotFound()
	}
	if err != nil {
		return nil, errLedger(err)
	}
	if !h.routes(rec) {
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
func (h *Handler) serveGet(c *call) error {
	rec, err := h.ownRecord(c)
	if err != nil {
		return err
	}
	view := recordView{Record: rec}
	if rec.Status == storage.StatusPending && rec.Internal.PartCount > 0 {
		view.Multipart = &multipartInfo{PartSize: rec.Internal.PartSize, PartCount: rec.Internal.PartCount}
	}
	writeJSON(c.w, http.StatusOK, view)
	return nil
}
