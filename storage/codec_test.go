package storage

import (
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// fillRecord sets every field of Record and RecordInternal, found by
// reflection, to a random non-zero value: a field added to Record but not
// to the binary layout fails the round trip below.
func fillRecord(t testing.TB, rng *rand.Rand) *Record {
	rec := new(Record)
	var fill func(v reflect.Value)
	str := func() string {
		const chars = "aZ9/._-\"\\\x00é🙂\n"
		r := []rune(chars)
		n := 1 + rng.IntN(40)
		out := make([]rune, n)
		for i := range out {
			out[i] = r[rng.IntN(len(r))]
		}
		return string(out)
	}
	tm := func() time.Time { return time.Unix(rng.Int64N(1<<34)-1<<33, rng.Int64N(1e9)).UTC() }
	fill = func(v reflect.Value) {
		switch v.Interface().(type) {
		case time.Time:
			v.Set(reflect.ValueOf(tm()))
			return
		case *time.Time:
			x := tm()
			v.Set(reflect.ValueOf(&x))
			return
		case map[string]string:
			m := map[string]string{}
			for range 1 + rng.IntN(5) {
				m[str()] = str()
			}
			v.Set(reflect.ValueOf(m))
			return
		}
		switch v.Kind() {
		case reflect.Struct:
			for i := range v.NumField() {
				fill(v.Field(i))
			}
		case reflect.String:
			v.SetString(str())
		case reflect.Int64, reflect.Int32:
			v.SetInt(rng.Int64N(1<<31) - 1<<30 + 1)
		case reflect.Bool:
			v.SetBool(true)
		default:
			t.Fatalf("fillRecord: no filler for %s", v.Type())
		}
	}
	fill(reflect.ValueOf(rec).Elem())
	return rec
}

func TestRecordRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		rec := fillRecord(t, rng)
		if rng.IntN(3) == 0 {
			rec.Metadata, rec.ConfirmedAt = nil, nil
			rec.Internal.Recheck, rec.Internal.Notify = false, false
		}
		b, err := EncodeRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		if b[0] != encodingV2 {
			t.Fatalf("version byte %d", b[0])
		}
		got, err := DecodeRecord(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, rec) {
			t.Fatalf("round trip changed the record:\n got %+v\nwant %+v", got, rec)
		}
	}
	// The zero record too: zero times, no metadata.
	zero := &Record{}
	b, _ := EncodeRecord(zero)
	if got, err := DecodeRecord(b); err != nil || !reflect.DeepEqual(got, zero) {
		t.Fatalf("zero record: %+v, %v", got, err)
	}
}

// TestRecordV1StillRead: records written by earlier versions (JSON) read
// back as they were.
func TestRecordV1StillRead(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 100 {
		rec := fillRecord(t, rng)
		j, err := json.Marshal((*RecordWire)(rec))
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeRecord(append([]byte{encodingV1}, j...))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, rec) {
			t.Fatalf("v1 record read back differently:\n got %+v\nwant %+v", got, rec)
		}
	}
}

// TestRecordCorruptRefused: every truncation and every extension of a
// valid record is an error, never a panic or a half-read record.
func TestRecordCorruptRefused(t *testing.T) {
	rec := fillRecord(t, rand.New(rand.NewPCG(5, 6)))
	b, _ := EncodeRecord(rec)
	for i := 1; i < len(b); i++ {
		if got, err := DecodeRecord(b[:i]); err == nil {
			t.Fatalf("decoded %d of %d bytes: %+v", i, len(b), got)
		}
	}
	if _, err := DecodeRecord(append(b[:len(b):len(b)], 0)); err == nil {
		t.Fatal("decoded a record with a trailing byte")
	}
}

// FuzzDecodeRecord: no input panics or allocates beyond its size.
func FuzzDecodeRecord(f *testing.F) {
	rng := rand.New(rand.NewPCG(7, 8))
	for range 8 {
		b, _ := EncodeRecord(fillRecord(f, rng))
		f.Add(b)
	}
	f.Add([]byte{encodingV2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := DecodeRecord(b)
		if err != nil || b[0] != encodingV2 {
			return
		}
		again, _ := EncodeRecord(rec)
		if _, err := DecodeRecord(again); err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
	})
}

func BenchmarkRecordCodec(b *testing.B) {
	rec := fillRecord(b, rand.New(rand.NewPCG(9, 10)))
	v1, _ := json.Marshal((*RecordWire)(rec))
	v1 = append([]byte{encodingV1}, v1...)
	v2, _ := EncodeRecord(rec)
	b.Run("encode/v1-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal((*RecordWire)(rec))
		}
	})
	b.Run("encode/v2", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = EncodeRecord(rec)
		}
	})
	b.Run("decode/v1-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = DecodeRecord(v1)
		}
	})
	b.Run("decode/v2", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = DecodeRecord(v2)
		}
	})
	b.ReportMetric(float64(len(v2))/float64(len(v1)), "size-ratio")
}

// FuzzUvarint: the string decoder reads varints exactly as encoding/binary.
func FuzzUvarint(f *testing.F) {
	for _, b := range [][]byte{{}, {0}, {0x80}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, n := binary.Uvarint(b)
		gv, gn := uvarint(string(b))
		if v != gv || n != gn {
			t.Fatalf("%x: got %d,%d; want %d,%d", b, gv, gn, v, n)
		}
	})
}
