package boltledger

import (
	"bytes"
	"testing"
	"time"
)

func TestDecodeUnknownVersion(t *testing.T) {
	b, err := encodeRecord(testRecord("a", "a"))
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 2 {
		t.Fatalf("version byte %d, want 2", b[0])
	}
	b[0] = 99
	if _, err := decodeRecord(b); err == nil {
		t.Fatal("decoded an unknown version")
	}
	if _, err := decodeRecord(nil); err == nil {
		t.Fatal("decoded an empty value")
	}
}

func TestDueKeyOrder(t *testing.T) {
	times := []time.Time{
		{},
		time.Unix(-5, 0),
		time.Unix(0, 1),
		time.Unix(0, 256),
		time.Unix(1, 0),
		time.Unix(1<<32, 0),
		time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	for i := 1; i < len(times); i++ {
		a, b := dueKey(times[i-1], "z"), dueKey(times[i], "a")
		if bytes.Compare(a[:8], b[:8]) > 0 {
			t.Errorf("dueKey(%v) sorts after dueKey(%v)", times[i-1], times[i])
		}
	}
}
