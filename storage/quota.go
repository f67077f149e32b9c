package storage

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"
)

// Quotas are kept by the ledger itself: every record write moves its
// subject's usage counters in the same transaction, so that the counters
// are exactly what the records say, survive restarts and hold across
// instances sharing one ledger. The rules (what a record counts, when a
// create fits) live here, once, for every backend.

// Limit names: QuotaError.Limit, and what operators configure.
const (
	LimitPending      = "pending"       // uploads pending at once
	LimitPendingBytes = "pending_bytes" // declared bytes pending at once
	LimitUploads      = "uploads"       // confirmed (and pending) uploads, in total or per window
	LimitBytes        = "bytes"         // confirmed (and pending) bytes, in total or per window
	LimitRate         = "rate"          // creates, token bucket
)

// Limits are one route's quotas on each of its subjects. A zero field is
// no limit.
type Limits struct {
	// Pending bounds the uploads pending at once.
	Pending int64
	// PendingBytes bounds the bytes of the uploads pending at once; an
	// upload created without a size counts the largest size its policy
	// allows (Charge).
	PendingBytes int64
	// Uploads bounds confirmed uploads per UploadsWindow (0: in total).
	// Pending uploads count too, since each may still be confirmed: the
	// limit then holds however many are confirmed later.
	Uploads       int64
	UploadsWindow time.Duration
	// Bytes bounds confirmed bytes per BytesWindow (0: in total); pending
	// uploads count with their Charge.
	Bytes       int64
	BytesWindow time.Duration
	// Rate creates per RateWindow refill a token bucket of Burst tokens
	// (0: Rate); each create takes one.
	Rate       int64
	RateWindow time.Duration
	Burst      int64
}

// IsZero reports whether l limits nothing.
func (l Limits) IsZero() bool { return l == Limits{} }

// Check reports limits that cannot be applied: negative values, a rate
// without its window, windows under a second.
func (l Limits) Check() error {
	for _, v := range []int64{l.Pending, l.PendingBytes, l.Uploads, l.Bytes, l.Rate, l.Burst} {
		if v < 0 {
			return errors.New("quota limits must not be negative")
		}
	}
	for _, w := range []time.Duration{l.UploadsWindow, l.BytesWindow, l.RateWindow} {
		if w < 0 || w > 0 && w < time.Second {
			return errors.New("quota windows must be at least 1s")
		}
	}
	if l.Rate > 0 && l.RateWindow <= 0 {
		return errors.New("a quota rate needs its window")
	}
	return nil
}

// QuotaKey names whose usage is counted: a subject of an identity source,
// on a route. It is a record's Internal.Route, Source and Subject.
type QuotaKey struct {
	Route, Source, Subject string
}

// QuotaKeyOf is the key rec counts under.
func QuotaKeyOf(rec *Record) QuotaKey {
	return QuotaKey{Route: rec.Internal.Route, Source: rec.Internal.Source, Subject: rec.Internal.Subject}
}

// Digest is a fixed-size name of k for a backend's index: SHA-256 of the
// route and the source, each after its length as 4 big-endian bytes, then
// the subject. Fixed size keeps any subject within index limits.
func (k QuotaKey) Digest() []byte {
	h := sha256.New()
	var n [4]byte
	for _, s := range []string{k.Route, k.Source} {
		binary.BigEndian.PutUint32(n[:], uint32(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	h.Write([]byte(k.Subject))
	return h.Sum(nil)
}

// ErrQuota is matched (errors.Is) by every *QuotaError.
var ErrQuota = errors.New("quota exceeded")

// QuotaError is a create refused by a limit.
type QuotaError struct {
	// Limit is the limit that refused: LimitPending, ...
	Limit string
	// Max is its value; Window its window (uploads, bytes, rate), 0 for
	// "in total"; Burst the rate's bucket size.
	Max    int64
	Window time.Duration
	Burst  int64
	// Used is what counted against it: pending, confirmed in the window
	// plus pending, or for the rate the whole tokens left.
	Used int64
	// Need is what the create would have added (1, or its bytes).
	Need int64
	// RetryAfter is how long until the create would fit if nothing else
	// changed; 0 when waiting alone does not help (pending uploads must
	// end first, or the upload is larger than the limit).
	RetryAfter time.Duration
}

func (e *QuotaError) Error() string {
	s := fmt.Sprintf("quota %s exceeded: %d used, %d more asked, limit %d", e.Limit, e.Used, e.Need, e.Max)
	if e.Window > 0 {
		s += " per " + e.Window.String()
	}
	if e.RetryAfter > 0 {
		s += fmt.Sprintf("; fits in %s", e.RetryAfter)
	}
	return s
}

// Is makes errors.Is(err, ErrQuota) hold.
func (e *QuotaError) Is(target error) bool { return target == ErrQuota }

// QuotaLedger is a Ledger that keeps each subject's usage with its records.
// Both built-in ledgers are QuotaLedgers.
type QuotaLedger interface {
	Ledger
	// CreateWithin stores rec like Create if it fits lim given the usage
	// of its QuotaKey at rec.CreatedAt, checked and counted in the same
	// transaction as the record: concurrent creates, from this process or
	// another, never overshoot a limit. A create that does not fit writes
	// nothing and returns a *QuotaError.
	CreateWithin(ctx context.Context, rec *Record, lim Limits) error
	// Usage returns the usage of key as stored (zero if it has none).
	Usage(ctx context.Context, key QuotaKey) (*Usage, error)
}

// Usage is one subject's counters on one route, moved by every record
// write (Apply) and checked by creates (Admit).
type Usage struct {
	// Pending and PendingBytes count the pending records and their
	// Charge.
	Pending      int64
	PendingBytes int64
	// Uploads and Bytes count confirmations ever made.
	Uploads int64
	Bytes   int64

	// Slots count confirmations for windowed limits: slot i holds those
	// confirmed in [Start, Start+Grain). Grain and Span (the longest
	// window) are set by the last Admit from its limits; with no windowed
	// limit both are 0 and no slots are kept. Slots are in Start order.
	Grain time.Duration
	Span  time.Duration
	Slots []UsageSlot

	// Tokens is the rate bucket's content at TokensAt; a zero TokensAt is
	// a full bucket.
	Tokens   float64
	TokensAt time.Time
}

// UsageSlot is one window slot.
type UsageSlot struct {
	Start   int64 // Unix nanoseconds, a multiple of Grain
	Uploads int64
	Bytes   int64
}

// Charge is what rec counts against pending bytes while it is pending: its
// size, or the largest size its policy allows when it was created without
// one.
func Charge(rec *Record) int64 {
	if rec.Size > 0 {
		return rec.Size
	}
	return max(rec.Internal.MaxSize, 0)
}

// UsageChange is what one record write does to one subject's usage.
type UsageChange struct {
	Key QuotaKey
	// Pending and PendingBytes are added to the usage's.
	Pending, PendingBytes int64
	// Confirmed marks a record that became confirmed, with its Size, at
	// ConfirmedAt.
	Confirmed   bool
	Size        int64
	ConfirmedAt time.Time
}

// UsageChanges lists what a record write does to usage, by key: old is
// the record before (nil: created), new after (nil: deleted). A record
// counts as pending while pending; it counts a confirmation once, when it
// becomes confirmed. Deleting a confirmed record takes nothing back. A
// write that changes nothing counted lists nothing.
func UsageChanges(old, new *Record) []UsageChange {
	var out []UsageChange
	at := func(k QuotaKey) *UsageChange {
		for i := range out {
			if out[i].Key == k {
				return &out[i]
			}
		}
		out = append(out, UsageChange{Key: k})
		return &out[len(out)-1]
	}
	if old != nil && old.Status == StatusPending {
		c := at(QuotaKeyOf(old))
		c.Pending--
		c.PendingBytes -= Charge(old)
	}
	if new != nil && new.Status == StatusPending {
		c := at(QuotaKeyOf(new))
		c.Pending++
		c.PendingBytes += Charge(new)
	}
	if new != nil && new.Status == StatusConfirmed && (old == nil || old.Status != StatusConfirmed) {
		c := at(QuotaKeyOf(new))
		c.Confirmed, c.Size = true, max(new.Size, 0)
		c.ConfirmedAt = new.Internal.UpdatedAt
		if new.ConfirmedAt != nil {
			c.ConfirmedAt = *new.ConfirmedAt
		}
	}
	kept := out[:0]
	for _, c := range out {
		if c.Pending != 0 || c.PendingBytes != 0 || c.Confirmed {
			kept = append(kept, c)
		}
	}
	sort.Slice(kept, func(i, j int) bool { return string(kept[i].Key.Digest()) < string(kept[j].Key.Digest()) })
	return kept
}

// Apply adds c to u. Counters never go below zero: a record written before
// its ledger kept usage may leave pending after it.
func (u *Usage) Apply(c UsageChange) {
	u.Pending = max(u.Pending+c.Pending, 0)
	u.PendingBytes = max(u.PendingBytes+c.PendingBytes, 0)
	if !c.Confirmed {
		return
	}
	u.Uploads++
	u.Bytes += c.Size
	if u.Grain <= 0 {
		return
	}
	start := floorTo(c.ConfirmedAt.UnixNano(), int64(u.Grain))
	u.addSlot(UsageSlot{Start: start, Uploads: 1, Bytes: c.Size})
	u.prune(c.ConfirmedAt)
}

// addSlot merges s into the slot with its start, keeping Start order.
func (u *Usage) addSlot(s UsageSlot) {
	i := sort.Search(len(u.Slots), func(i int) bool { return u.Slots[i].Start >= s.Start })
	if i < len(u.Slots) && u.Slots[i].Start == s.Start {
		u.Slots[i].Uploads += s.Uploads
		u.Slots[i].Bytes += s.Bytes
		return
	}
	u.Slots = append(u.Slots, UsageSlot{})
	copy(u.Slots[i+1:], u.Slots[i:])
	u.Slots[i] = s
}

// prune drops the slots that no window can count any more at now.
func (u *Usage) prune(now time.Time) {
	cut := now.UnixNano() - int64(u.Span)
	n := 0
	for n < len(u.Slots) && u.Slots[n].Start+int64(u.Grain) <= cut {
		n++
	}
	u.Slots = append(u.Slots[:0], u.Slots[n:]...)
}

// grainFor is the slot width for windows lim has: 1/64 of the shortest
// window, but at most 1,025 slots for the longest, in whole seconds. A
// confirmation counts until its slot's end leaves the window, up to one
// grain longer than its own time would: never less, so a limit is never
// exceeded in any window, and a create is refused at most a grain early.
func grainFor(lim Limits) (grain, span time.Duration) {
	var ws []time.Duration
	if lim.Uploads > 0 && lim.UploadsWindow > 0 {
		ws = append(ws, lim.UploadsWindow)
	}
	if lim.Bytes > 0 && lim.BytesWindow > 0 {
		ws = append(ws, lim.BytesWindow)
	}
	if len(ws) == 0 {
		return 0, 0
	}
	lo, hi := ws[0], ws[0]
	for _, w := range ws[1:] {
		lo, hi = min(lo, w), max(hi, w)
	}
	g := max(lo, hi/16) / 64
	g = (g + time.Second - 1).Truncate(time.Second)
	return max(g, time.Second), hi
}

// setWindows brings the slots to lim's windows: a new grain moves each
// slot's counts to the new slot holding the old slot's last instant (later,
// never earlier, so nothing leaves a window sooner than before).
func (u *Usage) setWindows(lim Limits, now time.Time) {
	grain, span := grainFor(lim)
	if grain == 0 {
		u.Grain, u.Span, u.Slots = 0, 0, nil
		return
	}
	if u.Grain != grain && len(u.Slots) > 0 {
		old := u.Slots
		u.Slots = nil
		for _, s := range old {
			last := s.Start + int64(u.Grain) - 1
			if u.Grain <= 0 {
				last = s.Start
			}
			s.Start = floorTo(last, int64(grain))
			u.addSlot(s)
		}
	}
	u.Grain, u.Span = grain, span
	u.prune(now)
}

// inWindow counts the confirmations in the w before now as the slots hold
// them; w 0 is every confirmation.
func (u *Usage) inWindow(w time.Duration, now time.Time) (uploads, bytes int64) {
	if w <= 0 {
		return u.Uploads, u.Bytes
	}
	cut := now.UnixNano() - int64(w)
	for _, s := range u.Slots {
		if s.Start+int64(u.Grain) > cut {
			uploads += s.Uploads
			bytes += s.Bytes
		}
	}
	return uploads, bytes
}

// InWindow counts confirmations in the window w before now (w 0: in
// total). Windows count what the slots hold: confirmations since a limit
// with a window was first checked on the route.
func (u *Usage) InWindow(w time.Duration, now time.Time) (uploads, bytes int64) {
	return u.inWindow(w, now)
}

// windowRetry is when enough of the window's slots will have left it for
// the counted amount (of slot field f) to fall to at most room; 0 if it
// never will on its own.
func (u *Usage) windowRetry(w time.Duration, now time.Time, counted, room int64, f func(UsageSlot) int64) time.Duration {
	if room < 0 {
		return 0
	}
	cut := now.UnixNano() - int64(w)
	for _, s := range u.Slots {
		end := s.Start + int64(u.Grain)
		if end <= cut {
			continue
		}
		counted -= f(s)
		if counted <= room {
			return time.Duration(end - cut)
		}
	}
	return 0
}

// TokensLeft is the rate bucket's content at now under lim.
func (u *Usage) TokensLeft(lim Limits, now time.Time) float64 {
	burst := float64(lim.Burst)
	if lim.Burst <= 0 {
		burst = float64(lim.Rate)
	}
	if u.TokensAt.IsZero() {
		return burst
	}
	elapsed := now.Sub(u.TokensAt)
	if elapsed < 0 {
		elapsed = 0 // another instance's clock ran ahead
	}
	refill := float64(lim.Rate) * elapsed.Seconds() / lim.RateWindow.Seconds()
	return math.Min(burst, u.Tokens+refill)
}

// Admit checks that rec, about to be created, fits lim at now given u and,
// if it does, takes a rate token and brings the window slots to lim; the
// caller then applies rec's own UsageChanges. When rec does not fit, u is
// left as it was and the error is a *QuotaError: of a limit that waiting
// alone does not help, if any, else the one that takes longest to clear.
func (u *Usage) Admit(rec *Record, lim Limits, now time.Time) error {
	if err := lim.Check(); err != nil {
		return err
	}
	next := u.clone()
	next.setWindows(lim, now)
	var n, b int64 // what rec adds to uploads and bytes
	switch rec.Status {
	case StatusPending:
		n, b = 1, Charge(rec)
	case StatusConfirmed:
		n, b = 1, max(rec.Size, 0)
	}
	var refused []*QuotaError
	refuse := func(e *QuotaError) { refused = append(refused, e) }

	if rec.Status == StatusPending {
		if lim.Pending > 0 && next.Pending+1 > lim.Pending {
			refuse(&QuotaError{Limit: LimitPending, Max: lim.Pending, Used: next.Pending, Need: 1})
		}
		if lim.PendingBytes > 0 && next.PendingBytes+b > lim.PendingBytes {
			refuse(&QuotaError{Limit: LimitPendingBytes, Max: lim.PendingBytes, Used: next.PendingBytes, Need: b})
		}
	}
	if lim.Uploads > 0 && n > 0 {
		done, _ := next.inWindow(lim.UploadsWindow, now)
		if done+next.Pending+n > lim.Uploads {
			e := &QuotaError{Limit: LimitUploads, Max: lim.Uploads, Window: lim.UploadsWindow, Used: done + next.Pending, Need: n}
			if lim.UploadsWindow > 0 {
				e.RetryAfter = next.windowRetry(lim.UploadsWindow, now, done, lim.Uploads-next.Pending-n, func(s UsageSlot) int64 { return s.Uploads })
			}
			refuse(e)
		}
	}
	if lim.Bytes > 0 && n > 0 {
		_, done := next.inWindow(lim.BytesWindow, now)
		if done+next.PendingBytes+b > lim.Bytes {
			e := &QuotaError{Limit: LimitBytes, Max: lim.Bytes, Window: lim.BytesWindow, Used: done + next.PendingBytes, Need: b}
			if lim.BytesWindow > 0 {
				e.RetryAfter = next.windowRetry(lim.BytesWindow, now, done, lim.Bytes-next.PendingBytes-b, func(s UsageSlot) int64 { return s.Bytes })
			}
			refuse(e)
		}
	}
	if lim.Rate > 0 {
		tokens := next.TokensLeft(lim, now)
		if tokens < 1 {
			wait := time.Duration((1 - tokens) * float64(lim.RateWindow) / float64(lim.Rate))
			refuse(&QuotaError{Limit: LimitRate, Max: lim.Rate, Window: lim.RateWindow, Burst: lim.Burst, Used: int64(tokens), Need: 1,
				RetryAfter: max(wait, time.Nanosecond)})
		} else {
			next.Tokens = tokens - 1
			if now.After(next.TokensAt) {
				next.TokensAt = now
			}
		}
	} else {
		next.Tokens, next.TokensAt = 0, time.Time{}
	}

	if len(refused) > 0 {
		worst := refused[0]
		for _, e := range refused[1:] {
			if worst.RetryAfter > 0 && (e.RetryAfter == 0 || e.RetryAfter > worst.RetryAfter) {
				worst = e
			}
		}
		return worst
	}
	*u = *next
	return nil
}

func (u *Usage) clone() *Usage {
	c := *u
	c.Slots = append([]UsageSlot(nil), u.Slots...)
	return &c
}

// floorTo rounds t down to a multiple of g (also for t < 0).
func floorTo(t, g int64) int64 {
	r := t % g
	if r < 0 {
		r += g
	}
	return t - r
}

// usageEncodingV1 is the first byte of an encoded Usage; varints follow.
const usageEncodingV1 byte = 1

// MarshalBinary encodes u compactly for a ledger.
func (u *Usage) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 48+len(u.Slots)*12)
	b = append(b, usageEncodingV1)
	for _, v := range []int64{u.Pending, u.PendingBytes, u.Uploads, u.Bytes, int64(u.Grain), int64(u.Span)} {
		b = binary.AppendVarint(b, v)
	}
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(u.Tokens))
	var at int64
	if !u.TokensAt.IsZero() {
		at = u.TokensAt.UnixNano()
	}
	b = binary.AppendVarint(b, at)
	b = binary.AppendUvarint(b, uint64(len(u.Slots)))
	prev := int64(0)
	for _, s := range u.Slots {
		// Starts as differences: consecutive slots are small numbers.
		b = binary.AppendVarint(b, s.Start-prev)
		b = binary.AppendVarint(b, s.Uploads)
		b = binary.AppendVarint(b, s.Bytes)
		prev = s.Start
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary wrote; an empty b is a zero
// Usage.
func (u *Usage) UnmarshalBinary(b []byte) error {
	*u = Usage{}
	if len(b) == 0 {
		return nil
	}
	if b[0] != usageEncodingV1 {
		return fmt.Errorf("unknown usage encoding version %d", b[0])
	}
	b = b[1:]
	bad := errors.New("malformed usage")
	varint := func() (int64, error) {
		v, n := binary.Varint(b)
		if n <= 0 {
			return 0, bad
		}
		b = b[n:]
		return v, nil
	}
	var vals [6]int64
	for i := range vals {
		v, err := varint()
		if err != nil {
			return err
		}
		vals[i] = v
	}
	u.Pending, u.PendingBytes, u.Uploads, u.Bytes = vals[0], vals[1], vals[2], vals[3]
	u.Grain, u.Span = time.Duration(vals[4]), time.Duration(vals[5])
	if len(b) < 8 {
		return bad
	}
	u.Tokens = math.Float64frombits(binary.BigEndian.Uint64(b))
	b = b[8:]
	if math.IsNaN(u.Tokens) || math.IsInf(u.Tokens, 0) || u.Grain < 0 || u.Span < 0 {
		return bad
	}
	at, err := varint()
	if err != nil {
		return err
	}
	if at != 0 {
		u.TokensAt = time.Unix(0, at).UTC()
	}
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return bad
	}
	b = b[k:]
	if n > 0 {
		u.Slots = make([]UsageSlot, n)
	}
	prev := int64(0)
	for i := range u.Slots {
		d, err := varint()
		if err != nil {
			return err
		}
		up, err := varint()
		if err != nil {
			return err
		}
		by, err := varint()
		if err != nil {
			return err
		}
		prev += d
		u.Slots[i] = UsageSlot{Start: prev, Uploads: up, Bytes: by}
	}
	if len(b) != 0 {
		return bad
	}
	return nil
}
