package storage

import (
	"encoding/binary"
	"errors"
	"time"
)

// The binary record layout (encodingV2), field by field in Record's order:
// strings as a uvarint length and the bytes, integers as varints, times as
// varint Unix seconds and uvarint nanoseconds (in UTC: every record time is),
// Metadata as a uvarint count and its pairs, ConfirmedAt after a presence
// byte, and Internal's three booleans as one byte of flags. Appending a field
// at the end is a compatible change only with a new version byte: the
// decoder refuses trailing bytes so that corruption is never half-read.

const (
	flagRecheck = 1 << iota
	flagRetire
	flagNotify
)

func recordSizeHint(r *Record) int {
	n := 96 + len(r.ID) + len(r.Key) + len(r.Status) + len(r.Filename) + len(r.Type) + len(r.SHA256) +
		len(r.Internal.Subject) + len(r.Internal.Source) + len(r.Internal.Store) + len(r.Internal.Route) +
		len(r.Internal.Kind) + len(r.Internal.UploadID) + len(r.Internal.ETag) + len(r.Internal.Reason)
	for k, v := range r.Metadata {
		n += 4 + len(k) + len(v)
	}
	return n
}

func appendRecordV2(b []byte, r *Record) []byte {
	b = append(b, encodingV2)
	b = appendString(b, r.ID)
	b = appendString(b, r.Key)
	b = appendString(b, string(r.Status))
	b = appendString(b, r.Filename)
	b = binary.AppendVarint(b, r.Size)
	b = appendString(b, r.Type)
	b = appendString(b, r.SHA256)
	b = binary.AppendUvarint(b, uint64(len(r.Metadata)))
	for k, v := range r.Metadata {
		b = appendString(b, k)
		b = appendString(b, v)
	}
	b = appendTime(b, r.CreatedAt)
	if r.ConfirmedAt != nil {
		b = appendTime(append(b, 1), *r.ConfirmedAt)
	} else {
		b = append(b, 0)
	}
	in := &r.Internal
	b = appendString(b, in.Subject)
	b = appendString(b, in.Source)
	b = appendString(b, in.Store)
	b = appendString(b, in.Route)
	b = appendString(b, in.Kind)
	b = binary.AppendVarint(b, in.MinSize)
	b = binary.AppendVarint(b, in.MaxSize)
	b = appendString(b, in.UploadID)
	b = binary.AppendVarint(b, in.PartSize)
	b = binary.AppendVarint(b, int64(in.PartCount))
	b = appendTime(b, in.ExpiresAt)
	b = appendTime(b, in.UpdatedAt)
	var flags byte
	if in.Recheck {
		flags |= flagRecheck
	}
	if in.Retire {
		flags |= flagRetire
	}
	if in.Notify {
		flags |= flagNotify
	}
	b = append(b, flags)
	b = appendString(b, in.ETag)
	return appendString(b, in.Reason)
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func appendTime(b []byte, t time.Time) []byte {
	return binary.AppendUvarint(binary.AppendVarint(b, t.Unix()), uint64(t.Nanosecond()))
}

var errCorrupt = errors.New("truncated or malformed binary record")

// reader takes a binary record apart; the first error sticks and every
// later read returns a zero value. It reads from one copy of the input made
// up front: the record's strings are slices of it, one allocation for all.
type reader struct {
	b   string
	err error
}

func (d *reader) uvarint() uint64 {
	v, n := uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *reader) varint() int64 {
	ux, n := uvarint(d.b)
	v := int64(ux >> 1)
	if ux&1 != 0 {
		v = ^v
	}
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *reader) byte() byte {
	if len(d.b) == 0 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *reader) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

func (d *reader) time() time.Time {
	sec, nsec := d.varint(), d.uvarint()
	if nsec >= 1e9 {
		d.fail()
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

func (d *reader) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.b = ""
}

// uvarint is binary.Uvarint on a string.
func uvarint(s string) (uint64, int) {
	var x uint64
	var shift uint
	for i := 0; i < len(s); i++ {
		if i == binary.MaxVarintLen64 {
			return 0, -(i + 1) // overflow
		}
		c := s[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, -(i + 1) // overflow
			}
			return x | uint64(c)<<shift, i + 1
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	return 0, 0
}

func decodeRecordV2(b []byte) (*Record, error) {
	d := &reader{b: string(b)} // a copy: the record outlives b
	r := new(Record)
	r.ID = d.string()
	r.Key = d.string()
	r.Status = Status(d.string())
	r.Filename = d.string()
	r.Size = d.varint()
	r.Type = d.string()
	r.SHA256 = d.string()
	// Each pair takes at least two bytes: a corrupt count cannot make
	// the map larger than the input.
	if n := d.uvarint(); n > uint64(len(d.b))/2 {
		d.fail()
	} else if n > 0 {
		r.Metadata = make(map[string]string, n)
		for range n {
			k := d.string()
			r.Metadata[k] = d.string()
		}
	}
	r.CreatedAt = d.time()
	switch d.byte() {
	case 0:
	case 1:
		t := d.time()
		r.ConfirmedAt = &t
	default:
		d.fail()
	}
	in := &r.Internal
	in.Subject = d.string()
	in.Source = d.string()
	in.Store = d.string()
	in.Route = d.string()
	in.Kind = d.string()
	in.MinSize = d.varint()
	in.MaxSize = d.varint()
	in.UploadID = d.string()
	in.PartSize = d.varint()
	if pc := d.varint(); int64(int32(pc)) != pc {
		d.fail()
	} else {
		in.PartCount = int32(pc)
	}
	in.ExpiresAt = d.time()
	in.UpdatedAt = d.time()
	flags := d.byte()
	if flags&^(flagRecheck|flagRetire|flagNotify) != 0 {
		d.fail()
	}
	in.Recheck, in.Retire, in.Notify = flags&flagRecheck != 0, flags&flagRetire != 0, flags&flagNotify != 0
	in.ETag = d.string()
	in.Reason = d.string()
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	if d.err != nil {
		return nil, d.err
	}
	return r, nil
}
