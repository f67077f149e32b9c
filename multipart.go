package caddyupload

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/caddyupload/caddyupload/internal/jsonw"
	"github.com/caddyupload/caddyupload/storage"
)

const maxPartsPerSignCall = 1000

// partLayout fixes the part size of a multipart upload of size bytes:
// equal parts but the last (R2 requires it), at least the route's part
// size, grown in whole MiB so that no more than 10,000 parts are needed.
func partLayout(size, partSize int64) (int64, int32) {
	if min := (size + maxParts - 1) / maxParts; partSize < min {
		const mib = 1 << 20
		partSize = (min + mib - 1) / mib * mib
	}
	return partSize, int32((size + partSize - 1) / partSize)
}

// createMultipart starts the storage server's multipart upload for rec.
func (h *Handler) createMultipart(c *call, rec *storage.Record) error {
	if rec.Size > 0 {
		rec.Internal.PartSize, rec.Internal.PartCount = partLayout(rec.Size, h.PartSize)
	}
	uploadID, err := h.store.CreateMultipart(c.ctx(), rec.Key, rec.Type)
	if err != nil {
		return errStorage(err)
	}
	rec.Internal.UploadID = uploadID
	return nil
}

// partSize is the exact length of part n of rec; 0 when the client picks
// its own part size (uploads created without a size).
func partSize(rec *storage.Record, n int32) int64 {
	if rec.Internal.PartCount == 0 {
		return 0
	}
	if n < rec.Internal.PartCount {
		return rec.Internal.PartSize
	}
	return rec.Size - int64(rec.Internal.PartCount-1)*rec.Internal.PartSize
}

type signPartsRequest struct {
	Numbers []int32 `json:"numbers"`
	// SHA256 optionally lists, in the order of Numbers, each part's
	// SHA-256 in hex; each is signed into its part's URL.
	SHA256 []string `json:"sha256"`
}

type signedPart struct {
	Number  int32             `json:"number"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
}

type signPartsResponse struct {
	Parts     []signedPart `json:"parts"`
	ExpiresAt time.Time    `json:"expires_at"`
}

// serveSignParts handles POST /{id}/parts.
func (h *Handler) serveSignParts(c *call) error {
	var req signPartsRequest
	if e := decodeBody(c.r, &req); e != nil {
		return e
	}
	if len(req.Numbers) == 0 || len(req.Numbers) > maxPartsPerSignCall {
		return errInvalid(fmt.Sprintf("numbers must list 1 to %d part numbers", maxPartsPerSignCall))
	}
	sums, e := partSums(req)
	if e != nil {
		return e
	}
	rec, err := h.pendingMultipart(c)
	if err != nil {
		return err
	}
	resp := signPartsResponse{Parts: make([]signedPart, 0, len(req.Numbers))}
	for i, n := range req.Numbers {
		sp, err := h.signPart(c, rec, n, sums[i])
		if err != nil {
			return err
		}
		resp.Parts = append(resp.Parts, signedPart{Number: n, URL: sp.URL, Headers: sp.Headers})
		resp.ExpiresAt = sp.Expires
	}
	writeJSON(c.w, http.StatusOK, &resp)
	return nil
}

// appendJSON appends r as encoding/json writes it, without reflection
// (TestSignPartsResponseJSON holds the two equal).
func (r *signPartsResponse) appendJSON(b []byte) []byte {
	b = append(b, `{"parts":`...)
	if r.Parts == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range r.Parts {
			p := &r.Parts[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"number":`...)
			b = strconv.AppendInt(b, int64(p.Number), 10)
			b = append(b, `,"url":`...)
			b = jsonw.AppendStringNoHTML(b, p.URL)
			if len(p.Headers) > 0 {
				b = append(b, `,"headers":`...)
				b = jsonw.AppendStringMapNoHTML(b, p.Headers)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"expires_at":`...)
	b = jsonw.AppendTime(b, r.ExpiresAt)
	return append(b, "}\n"...)
}

// partSums decodes the declared part checksums: one per number, or none.
func partSums(req signPartsRequest) ([][]byte, *apiError) {
	sums := make([][]byte, len(req.Numbers))
	if req.SHA256 == nil {
		return sums, nil
	}
	if len(req.SHA256) != len(req.Numbers) {
		return nil, errInvalid("sha256 must list one checksum for each part number")
	}
	for i, s := range req.SHA256 {
		if !isHexSHA256(s) {
			return nil, errInvalid("each sha256 must be 64 hexadecimal digits")
		}
		sums[i], _ = hex.DecodeString(s)
	}
	return sums, nil
}

// signPart presigns part n of rec, refusing numbers outside the upload.
// sum, the part's raw SHA-256 or nil, is signed into the URL.
func (h *Handler) signPart(c *call, rec *storage.Record, n int32, sum []byte) (storage.SignedRequest, error) {
	if sum == nil && h.RequireChecksum {
		return storage.SignedRequest{}, errInvalid("this route requires each part's sha256")
	}
	last := rec.Internal.PartCount
	if last == 0 {
		last = unsizedParts(rec.Internal.MaxSize)
		if n > last {
			return storage.SignedRequest{}, errTooLarge(fmt.Sprintf("this route's limit of %d bytes takes at most %d parts of 5 MiB or more", rec.Internal.MaxSize, last))
		}
	}
	if n < 1 || n > last {
		return storage.SignedRequest{}, errInvalid(fmt.Sprintf("part numbers must be between 1 and %d", last))
	}
	sr, err := h.store.PresignPart(c.ctx(), storage.PartInput{
		Key: rec.Key, UploadID: rec.Internal.UploadID, Number: n, Size: partSize(rec, n), SHA256: sum, TTL: time.Duration(h.URLTTL),
	}, h.origin(c.r))
	if err != nil {
		return sr, errStorage(err)
	}
	h.metrics.partSigned()
	return sr, nil
}

// unsizedParts bounds the part numbers of an upload whose client picks its
// own parts: every part but the last has at least 5 MiB, so more than this
// many parts cannot fit in limit bytes.
func unsizedParts(limit int64) int32 {
	if limit <= 0 {
		return maxParts
	}
	return int32(min(limit/minPartSize+1, maxParts))
}

// overLimit reports, for an upload whose client picks its own parts,
// whether storage already holds more bytes than the record allows: its
// parts carry no signed length, so each new part is signed only while the
// stored ones fit. Parts signed at the same time can overshoot by one part
// each; completion checks the total again.
func (h *Handler) overLimit(c *call, rec *storage.Record) (*rejection, error) {
	if rec.Internal.PartCount > 0 || rec.Internal.MaxSize == 0 {
		return nil, nil
	}
	parts, err := h.storedParts(c, rec)
	if err != nil {
		return nil, err
	}
	var total int64
	for _, p := range parts {
		total += p.Size
	}
	if total > rec.Internal.MaxSize {
		return rejectAs(errTooLarge, "the parts hold %d bytes, over this route's limit of %d", total, rec.Internal.MaxSize).as(rejectLimit), nil
	}
	return nil, nil
}

// pendingMultipart loads the caller's multipart record that may still
// receive parts.
func (h *Handler) pendingMultipart(c *call) (*storage.Record, error) {
	rec, err := h.ownRecord(c)
	if err != nil {
		return nil, err
	}
	if err := receivingParts(rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// receivingParts refuses records that take no parts (any more).
func receivingParts(rec *storage.Record) error {
	if rec.Internal.Kind != storage.KindMultipart {
		return errInvalid("this upload is not multipart")
	}
	if e := pendingState(rec, time.Now()); e != nil {
		return e
	}
	return nil
}

type listPartsResponse struct {
	Parts []storage.Part `json:"parts"`
}

// serveListParts handles GET /{id}/parts: what storage holds, to resume.
func (h *Handler) serveListParts(c *call) error {
	rec, err := h.pendingMultipart(c)
	if err != nil {
		return err
	}
	parts, err := h.storedParts(c, rec)
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusOK, listPartsResponse{Parts: parts})
	return nil
}

// storedParts lists the parts storage holds of rec's multipart upload.
func (h *Handler) storedParts(c *call, rec *storage.Record) ([]storage.Part, error) {
	parts, err := h.store.ListParts(c.ctx(), rec.Key, rec.Internal.UploadID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errExpired("the multipart upload no longer exists")
	}
	if err != nil {
		return nil, errStorage(err)
	}
	if parts == nil {
		parts = []storage.Part{}
	}
	return parts, nil
}

type completeRequest struct {
	Parts []partETag `json:"parts"`
}

type partETag struct {
	Number int32  `json:"number"`
	ETag   string `json:"etag"`
}

// assemble completes rec's multipart upload in storage from the stored
// parts, checked against the client's list when it sent one. It succeeds
// when the upload was completed before (a retry after a crash). Parts that
// break the record's layout or size limits are a *rejection.
func (h *Handler) assemble(c *call, rec *storage.Record, want *completeRequest) error {
	ctx := c.ctx()
	stored, err := h.store.ListParts(ctx, rec.Key, rec.Internal.UploadID)
	if errors.Is(err, storage.ErrNotFound) {
		// Completed by an earlier call whose confirmation was not recorded;
		// the object check that follows decides.
		return nil
	}
	if err != nil {
		return errStorage(err)
	}
	sort.Slice(stored, func(i, j int) bool { return stored[i].Number < stored[j].Number })
	byNumber := make(map[int32]storage.Part, len(stored))
	var total int64
	for _, p := range stored {
		byNumber[p.Number] = p
		total += p.Size
	}
	parts := stored
	if want != nil && len(want.Parts) > 0 {
		parts = make([]storage.Part, 0, len(want.Parts))
		for _, p := range want.Parts {
			s, ok := byNumber[p.Number]
			if !ok {
				return errNotUploaded(fmt.Sprintf("part %d is not in storage", p.Number))
			}
			if trimETag(p.ETag) != trimETag(s.ETag) {
				return errInvalid(fmt.Sprintf("part %d: the ETag does not match the stored part", p.Number))
			}
			parts = append(parts, s)
		}
		sort.Slice(parts, func(i, j int) bool { return parts[i].Number < parts[j].Number })
		total = 0
		for i, p := range parts {
			if i > 0 && parts[i-1].Number == p.Number {
				return errInvalid(fmt.Sprintf("part %d is listed twice", p.Number))
			}
			total += p.Size
		}
	}
	if len(parts) == 0 {
		return errNotUploaded("no parts have been uploaded")
	}
	if n := rec.Internal.PartCount; n > 0 {
		if int32(len(parts)) != n || parts[0].Number != 1 || parts[len(parts)-1].Number != n {
			return errNotUploaded(fmt.Sprintf("%d of %d parts are uploaded", len(parts), n))
		}
		for _, p := range parts {
			if p.Size != partSize(rec, p.Number) {
				return rejectAs(errVerification, "part %d has %d bytes, not %d", p.Number, p.Size, partSize(rec, p.Number)).as(rejectSize)
			}
		}
	}
	if rec.Size == 0 {
		if rj := outsideLimits(rec, total, "the parts hold"); rj != nil {
			return rj
		}
	}
	if f := beforeAssemble.Load(); f != nil {
		(*f)(rec)
	}
	if err := h.store.CompleteMultipart(ctx, rec.Key, rec.Internal.UploadID, parts); err != nil {
		if errors.Is(err, storage.ErrInvalidPart) {
			return errNotUploaded("storage refused the part list")
		}
		if errors.Is(err, storage.ErrNotFound) {
			// Assembled since the listing, by a completion that did not
			// record it: the object check that follows decides.
			return nil
		}
		return errStorage(err)
	}
	return nil
}

// beforeAssemble runs after a completion listed the parts and before it
// asks storage to assemble them; tests hold completions there.
var beforeAssemble atomic.Pointer[func(*storage.Record)]

func trimETag(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}
