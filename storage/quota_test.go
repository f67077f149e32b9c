package storage

import (
	"reflect"
	"testing"
	"time"
)

func TestUsageEncoding(t *testing.T) {
	for _, u := range []Usage{
		{},
		{Pending: 3, PendingBytes: 1 << 40, Uploads: 12, Bytes: 99, Grain: 57 * time.Second, Span: time.Hour,
			Slots:  []UsageSlot{{Start: -57e9, Uploads: 1, Bytes: 5}, {Start: 33_333_333 * 57e9, Uploads: 2, Bytes: 1 << 33}},
			Tokens: 2.75, TokensAt: time.Unix(1_900_000_000, 123).UTC()},
	} {
		b, err := u.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got Usage
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, u) {
			t.Fatalf("round trip\n got %+v\nwant %+v", got, u)
		}
		// Every truncation is an error, never a panic or a wrong value.
		for i := 1; i < len(b); i++ {
			if err := new(Usage).UnmarshalBinary(b[:i]); err == nil {
				t.Fatalf("%d of %d bytes decoded", i, len(b))
			}
		}
	}
	if err := new(Usage).UnmarshalBinary([]byte{2}); err == nil {
		t.Fatal("unknown version decoded")
	}
	// A slot count larger than the input cannot make a huge allocation.
	if err := new(Usage).UnmarshalBinary(append([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0xff, 0xff, 0xff, 0xff, 0x0f)); err == nil {
		t.Fatal("an impossible slot count decoded")
	}
}

func TestGrain(t *testing.T) {
	for _, c := range []struct {
		lim         Limits
		grain, span time.Duration
	}{
		{Limits{Uploads: 1}, 0, 0},
		{Limits{Uploads: 1, UploadsWindow: 24 * time.Hour}, 1350 * time.Second, 24 * time.Hour},
		{Limits{Uploads: 1, UploadsWindow: time.Hour}, 57 * time.Second, time.Hour},
		{Limits{Bytes: 1, BytesWindow: 10 * time.Second}, time.Second, 10 * time.Second},
		// Windows far apart: at most 1,025 slots for the longest.
		{Limits{Uploads: 1, UploadsWindow: time.Minute, Bytes: 1, BytesWindow: 30 * 24 * time.Hour}, 2532 * time.Second, 30 * 24 * time.Hour},
		// A window without its limit is no window.
		{Limits{UploadsWindow: time.Hour}, 0, 0},
	} {
		g, s := grainFor(c.lim)
		if g != c.grain || s != c.span {
			t.Errorf("grainFor(%+v) = %s, %s; want %s, %s", c.lim, g, s, c.grain, c.span)
		}
		if g > 0 && s/g > 1025 {
			t.Errorf("%+v: %d slots", c.lim, s/g)
		}
	}
}

// TestRegrain: a new grain never lets a confirmation leave a window before
// its time, and keeps every count.
func TestRegrain(t *testing.T) {
	base := time.Unix(1_900_000_000, 0)
	u := &Usage{}
	short := Limits{Uploads: 100, UploadsWindow: time.Hour}
	u.setWindows(short, base)
	var times []time.Time
	for i := range 50 {
		at := base.Add(time.Duration(i) * 73 * time.Second)
		times = append(times, at)
		u.Apply(UsageChange{Confirmed: true, Size: 1, ConfirmedAt: at})
	}
	now := times[len(times)-1]
	long := Limits{Uploads: 100, UploadsWindow: 7 * time.Hour}
	u.setWindows(long, now)
	n, _ := u.InWindow(time.Hour, now)
	if n != 50 {
		t.Fatalf("%d of 50 in the window after a new grain", n)
	}
	for _, w := range []time.Duration{10 * time.Minute, 30 * time.Minute} {
		want := 0
		for _, at := range times {
			if at.After(now.Add(-w)) {
				want++
			}
		}
		if got, _ := u.InWindow(w, now); got < int64(want) || got > int64(want)+int64((u.Grain+72*time.Second)/(73*time.Second))+1 {
			t.Errorf("window %s: %d counted, %d confirmed in it (grain %s)", w, got, want, u.Grain)
		}
	}
}

// FuzzUsageDecode: any bytes decode to an error or to a usage that encodes
// back to the same bytes.
func FuzzUsageDecode(f *testing.F) {
	u := Usage{Pending: 1, PendingBytes: 2, Grain: time.Second, Span: time.Minute, Slots: []UsageSlot{{Start: 5, Uploads: 1, Bytes: 9}}, Tokens: 0.5, TokensAt: time.Unix(1, 2)}
	b, _ := u.MarshalBinary()
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var u Usage
		if err := u.UnmarshalBinary(b); err != nil || len(b) == 0 {
			return
		}
		again, err := u.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var v Usage
		if err := v.UnmarshalBinary(again); err != nil || !reflect.DeepEqual(u, v) {
			t.Fatalf("%x decoded to %+v, which encodes to %x: %+v, %v", b, u, again, v, err)
		}
	})
}
