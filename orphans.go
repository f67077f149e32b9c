package caddyupload

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// orphanEvery is how many sweeps pass between two scans for orphaned
// multipart uploads (listing them costs storage requests).
const orphanEvery = 10

// keyPattern matches exactly the keys kt can produce, so that the orphan
// scan never touches an upload it could not have started.
func (kt keyTemplate) pattern() *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for _, p := range kt.parts {
		switch p.name {
		case "":
			b.WriteString(regexp.QuoteMeta(p.literal))
		case "uuid":
			b.WriteString(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
		case "id":
			b.WriteString(`[2-7a-z]{42}`)
		case "ext":
			b.WriteString(`(\.[a-z0-9]{1,16})?`)
		case "year":
			b.WriteString(`[0-9]{4}`)
		case "month", "day":
			b.WriteString(`[0-9]{2}`)
		default: // user, claims.*: escapeKeyValue's alphabet
			b.WriteString(`[A-Za-z0-9_.%-]{1,192}(~[0-9a-f]{16})?`)
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// sweepOrphans aborts multipart uploads under this route's key prefix that
// no pending record knows (a lost ledger file, a crash between starting the
// upload and recording it), once they are older than the pending TTL. Only
// keys of this route's template shape are candidates. Age is measured
// twice: by the storage server's Initiated time, and by when this process
// first saw the upload, so that a server clock running behind cannot make
// an upload whose record is being written look abandoned.
func (h *Handler) sweepOrphans(ctx context.Context, now time.Time) (int, error) {
	uploads, err := h.store.ListMultipartUploads(ctx, h.keys.prefix)
	if err != nil {
		return 0, fmt.Errorf("listing multipart uploads: %w", err)
	}
	pattern := h.keys.pattern()
	cutoff := now.Add(-time.Duration(h.PendingTTL))
	seen := h.orphansSeen.sighted(uploads, now)
	n := 0
	for _, u := range uploads {
		if !pattern.MatchString(u.Key) || u.Initiated.IsZero() || u.Initiated.After(cutoff) || seen[u.UploadID].After(cutoff) {
			continue
		}
		rec, err := h.ledger.GetByKey(ctx, h.store.ID(), u.Key)
		switch {
		case errors.Is(err, storage.ErrNotFound):
		case err != nil:
			return n, err
		case rec.Status == storage.StatusPending && rec.Internal.UploadID == u.UploadID:
			continue // the regular sweep handles it at its deadline
		}
		if err := h.store.AbortMultipart(ctx, u.Key, u.UploadID); err != nil {
			return n, fmt.Errorf("aborting an orphaned multipart upload: %w", err)
		}
		n++
	}
	return n, nil
}

// sightings remembers when this process first saw each open multipart
// upload; uploads gone from storage are forgotten.
type sightings struct {
	mu    sync.Mutex
	first map[string]time.Time // by upload id
}

// sighted records the uploads listed at now and returns when each was
// first seen.
func (s *sightings) sighted(uploads []storage.MultipartUpload, now time.Time) map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := make(map[string]time.Time, len(uploads))
	for _, u := range uploads {
		t, ok := s.first[u.UploadID]
		if !ok {
			t = now
		}
		next[u.UploadID] = t
	}
	s.first = next
	return next
}
