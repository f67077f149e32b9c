package caddyupload

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// This file is where a completion decides a record's fate: confirmed when
// storage holds what was declared (and the application accepted it, on a
// forwarding route), rejected when it does not.

// serveComplete handles POST /{id}/complete.
func (h *Handler) serveComplete(c *call) error {
	var want *completeRequest
	if c.r.ContentLength != 0 {
		want = new(completeRequest)
		if e := decodeBody(c.r, want); e != nil {
			return e
		}
	}
	rec, err := h.ownRecord(c)
	if err != nil {
		return err
	}
	return h.complete(c, rec, want, h.answerRecord(c))
}

type completeByKeyRequest struct {
	Key *string `json:"key"`
}

// serveCompleteByKey handles POST /complete {"key"}: the confirmation of a
// single upload made through /s3/params, where the client knows the key.
func (h *Handler) serveCompleteByKey(c *call) error {
	var req completeByKeyRequest
	if e := decodeBody(c.r, &req); e != nil {
		return e
	}
	if req.Key == nil || *req.Key == "" {
		return errInvalid("key is required")
	}
	rec, err := h.ledger.GetByKey(c.ctx(), h.store.ID(), *req.Key)
	if errors.Is(err, storage.ErrNotFound) {
		return errNotFound()
	}
	if err != nil {
		return errLedger(err)
	}
	if !h.owns(c.who, rec) {
		return errNotFound()
	}
	return h.complete(c, rec, nil, h.answerRecord(c))
}

// complete verifies rec's object in storage, hands it to the application
// when the route forwards, confirms the record and answers. It is
// idempotent: a confirmed record is answered as it is.
func (h *Handler) complete(c *call, rec *storage.Record, want *completeRequest, answer func(*storage.Record)) error {
	unlock, waited := h.completing.lock(rec.ID)
	defer unlock()
	if waited {
		// Another completion of this upload ran meanwhile: start from
		// what it decided.
		var err error
		if rec, err = h.ledger.Get(c.ctx(), rec.ID); err != nil {
			return errLedger(err)
		}
	}
	if rec.Status == storage.StatusConfirmed {
		answer(rec)
		return nil
	}
	info, err := h.verifyStored(c, rec, want)
	var rj *rejection
	if errors.As(err, &rj) {
		return h.reject(c.ctx(), rec, rj)
	}
	if err != nil {
		return err
	}
	if h.Forward == nil {
		out, err := h.confirm(c.ctx(), rec, info, true)
		if err != nil {
			return err
		}
		answer(out)
		return nil
	}
	held, err := h.holdForForward(c.ctx(), rec)
	if err != nil {
		return err
	}
	if held.Status == storage.StatusConfirmed {
		// A concurrent completion of the same upload was accepted.
		answer(held)
		return nil
	}
	app, err := h.forward(c, rec, info)
	if err != nil {
		return err
	}
	if app.accepted() {
		// The application has taken the upload: the confirmation is
		// written whatever the client does from now on, and whatever the
		// time (the hold kept the sweeper away).
		if _, err := h.confirm(context.WithoutCancel(c.ctx()), rec, info, false); err != nil {
			return err
		}
	}
	// The client gets the application's answer, after the confirmation is
	// durable.
	return app.send()
}

// answerRecord answers a completion with the record.
func (h *Handler) answerRecord(c *call) func(*storage.Record) {
	return func(rec *storage.Record) { writeJSON(c.w, http.StatusOK, rec) }
}

// rejection is a verification failure: the stored object is not what the
// record declares. The object is deleted and the record rejected.
type rejection struct {
	reason string
	// metric is the reason's bounded name for metrics (rejectSize, …).
	metric string
	// answer makes the client's error from the reason.
	answer func(string) *apiError
}

func (r *rejection) Error() string { return r.reason }

func rejectAs(answer func(string) *apiError, format string, args ...any) *rejection {
	return &rejection{reason: fmt.Sprintf(format, args...), answer: answer}
}

// verifyStored checks that rec's object is in storage as declared,
// assembling a multipart upload first. A mismatch is a *rejection.
func (h *Handler) verifyStored(c *call, rec *storage.Record, want *completeRequest) (storage.ObjectInfo, error) {
	var info storage.ObjectInfo
	if e := pendingState(rec, time.Now()); e != nil {
		return info, e
	}
	if rec.Internal.Kind == storage.KindMultipart {
		if err := h.assemble(c, rec, want); err != nil {
			return info, err
		}
	}
	info, err := h.store.Head(c.ctx(), rec.Key)
	if errors.Is(err, storage.ErrNotFound) {
		return info, errNotUploaded("the object is not in storage yet")
	}
	if err != nil {
		return info, errStorage(err)
	}
	if rj := mismatch(rec, info); rj != nil {
		return info, rj
	}
	if rj, err := h.checkContent(c.ctx(), rec, info); err != nil {
		return info, errStorage(err)
	} else if rj != nil {
		return info, rj
	}
	return info, nil
}

// mismatch says how the stored object differs from the record, or nil.
func mismatch(rec *storage.Record, info storage.ObjectInfo) *rejection {
	if rec.Size > 0 && info.Size != rec.Size {
		return rejectAs(errVerification, "the object has %d bytes, not the declared %d", info.Size, rec.Size).as(rejectSize)
	}
	if rec.Size == 0 {
		if rj := outsideLimits(rec, info.Size, "the object has"); rj != nil {
			return rj
		}
	}
	if rec.SHA256 != "" && len(info.SHA256) == 32 && hex.EncodeToString(info.SHA256) != rec.SHA256 {
		return rejectAs(errVerification, "the object's SHA-256 differs from the declared one").as(rejectChecksum)
	}
	if len(info.Served) > 0 {
		return rejectAs(errVerification, "the object was stored with headers this module did not sign: %s", strings.Join(info.Served, ", ")).as(rejectHeaders)
	}
	stored, _ := parseMediaType(info.ContentType)
	if stored != rec.Type {
		return rejectAs(errVerification, "the object's type is %q, not the declared %s", strings.ToValidUTF8(info.ContentType, ""), rec.Type).as(rejectType)
	}
	return nil
}

// outsideLimits checks size bytes of an upload created without a size
// against the limits its record carries: over is 413, under 422.
func outsideLimits(rec *storage.Record, size int64, what string) *rejection {
	lo := max(rec.Internal.MinSize, 1)
	if hi := rec.Internal.MaxSize; hi > 0 && size > hi {
		return rejectAs(errTooLarge, "%s %d bytes, over this route's limit of %d", what, size, hi).as(rejectLimit)
	}
	if size < lo {
		return rejectAs(errVerification, "%s %d bytes, under this route's minimum of %d", what, size, lo).as(rejectLimit)
	}
	return nil
}

// holdForForward keeps the sweeper away from rec while the application
// decides: the record must still be pending and in time, and its deadline
// moves past the forward's timeout (plus a minute for the confirmation's
// own write). Nothing is deleted under an application that is accepting.
func (h *Handler) holdForForward(ctx context.Context, rec *storage.Record) (*storage.Record, error) {
	now := time.Now().UTC()
	until := now.Add(time.Duration(h.Forward.Timeout) + time.Minute)
	out, err := h.ledger.Update(ctx, rec.ID, func(cur *storage.Record) error {
		if cur.Status == storage.StatusConfirmed {
			return nil
		}
		if e := pendingState(cur, now); e != nil {
			return e
		}
		if cur.Internal.ExpiresAt.Before(until) {
			cur.Internal.ExpiresAt = until
			cur.Internal.UpdatedAt = now
		}
		return nil
	})
	return out, ledgerAnswer(err)
}

// ledgerAnswer passes an *apiError from an update on, and makes any other
// ledger error the client's storage_unavailable.
func ledgerAnswer(err error) error {
	if err == nil {
		return nil
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return errLedger(err)
}

// confirm marks rec confirmed; the write is on disk before it returns. A
// pending record past its deadline is refused when deadline is set; after
// an application accepted the upload (under holdForForward) it is not: the
// upload is confirmed as long as nobody closed the record.
func (h *Handler) confirm(ctx context.Context, rec *storage.Record, info storage.ObjectInfo, deadline bool) (*storage.Record, error) {
	now := time.Now().UTC()
	confirmed := false
	out, err := h.ledger.Update(ctx, rec.ID, func(cur *storage.Record) error {
		if cur.Status == storage.StatusConfirmed {
			return nil
		}
		if e := pendingState(cur, now); e != nil && (deadline || cur.Status != storage.StatusPending) {
			return e
		}
		cur.Status = storage.StatusConfirmed
		cur.Size = info.Size
		cur.Internal.ETag = info.ETag
		cur.ConfirmedAt = &now
		cur.Internal.UpdatedAt = now
		h.retain(cur)
		confirmed = true
		return nil
	})
	if err != nil {
		return nil, ledgerAnswer(err)
	}
	if confirmed {
		h.metrics.uploadConfirmed(out.Size)
	}
	h.notifyWebhook()
	return out, nil
}

// reject deletes rec's object, marks the record rejected and returns the
// error the client gets.
func (h *Handler) reject(ctx context.Context, rec *storage.Record, rj *rejection) error {
	if err := h.removeObject(ctx, rec); err != nil {
		return errStorage(err)
	}
	if _, err := h.closeRecord(ctx, rec.ID, storage.StatusRejected, rj.reason, storage.StatusPending); err != nil {
		return err
	}
	h.metrics.uploadRejected(rj.metric)
	return rj.answer(rj.reason)
}

// revoke rejects a confirmed record whose object storage no longer holds as
// confirmed (replaced through a POST form still valid after confirmation):
// the record is marked first, so nothing serves it any more, then the
// replacement is deleted. The application learns it from the webhook's
// upload.rejected event.
func (h *Handler) revoke(ctx context.Context, rec *storage.Record, reason string) error {
	if _, err := h.closeRecord(ctx, rec.ID, storage.StatusRejected, reason, storage.StatusConfirmed); err != nil {
		return err
	}
	h.metrics.uploadRejected(rejectReplaced)
	if err := h.removeObject(ctx, rec); err != nil {
		return errStorage(err)
	}
	return errVerification(reason)
}

// closeRecord moves record id to status (aborted or rejected) if it is in
// one of from, in one ledger write, and wakes the webhook. While an upload
// URL of the record can still be used, the sweeper is told to delete its
// object once more after that URL died (recheckAfterURLs). It returns the
// record as stored.
func (h *Handler) closeRecord(ctx context.Context, id string, status storage.Status, reason string, from ...storage.Status) (*storage.Record, error) {
	out, err := h.ledger.Update(ctx, id, func(cur *storage.Record) error {
		if !slices.Contains(from, cur.Status) {
			return nil
		}
		now := time.Now().UTC()
		cur.Status = status
		cur.Internal.Reason = reason
		cur.Internal.UpdatedAt = now
		h.recheckAfterURLs(cur, now)
		return nil
	})
	if err != nil {
		return nil, errLedger(err)
	}
	h.notifyWebhook()
	return out, nil
}
