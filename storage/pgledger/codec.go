package pgledger

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// Records are stored as storage.EncodeRecord writes them.
var (
	encodeRecord = storage.EncodeRecord
	decodeRecord = storage.DecodeRecord
)

var (
	// PostgreSQL's timestamptz covers 4713 BC to 294276 AD; the columns
	// hold the record's times clamped to years 1 to 9999, which covers
	// every time the module writes. Queries read the exact times from the
	// record, so a clamp never changes an answer, only the order of
	// records whose times lie outside.
	minColTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxColTime = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
)

// colTime is t as a column holds it: whole microseconds (rounded down, so
// that a column never sorts after the time it stands for), clamped.
func colTime(t time.Time) time.Time {
	switch {
	case t.Before(minColTime):
		return minColTime
	case t.After(maxColTime):
		return maxColTime
	}
	return t.Truncate(time.Microsecond).UTC()
}

// recordArgs are the values of recordCols for rec.
func recordArgs(rec *storage.Record, data []byte) []any {
	in := &rec.Internal
	return []any{rec.ID, in.Store, rec.Key, string(rec.Status), in.Route, in.Subject, in.Source,
		colTime(in.ExpiresAt), rec.NeedsSweep(), colTime(rec.CreatedAt), colTime(in.UpdatedAt), data}
}

// A parked-events cursor is the last listed event's CreatedAt (Unix
// microseconds) and id, base64url-encoded: opaque to callers, and safe in
// a URL query.
func encodeCursor(createdAt time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(createdAt.UnixMicro(), 10) + ":" + id))
}

func decodeCursor(s string) (time.Time, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		at, id, ok := strings.Cut(string(b), ":")
		if ok {
			var us int64
			if us, err = strconv.ParseInt(at, 10, 64); err == nil {
				return time.UnixMicro(us).UTC(), id, nil
			}
		}
	}
	return time.Time{}, "", fmt.Errorf("parked events cursor %q", s)
}
