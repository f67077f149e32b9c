package s3store

import (
	"context"
	"net/url"
	"testing"
	"time"
)

var signTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// fixClock signs at signTime for the rest of the (serial) test.
func fixClock(t testing.TB) {
	old := now
	now = func() time.Time { return signTime }
	t.Cleanup(func() { now = old })
}

// newTestStore is a store with example credentials; edit adjusts cfg.
func newTestStore(t testing.TB, edit func(*Config)) *Store {
	t.Helper()
	cfg := Config{
		Endpoint:        "http://127.0.0.1:9000",
		Bucket:          "uploads",
		AccessKeyID:     "AKIDEXAMPLE",
		SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
		UsePathStyle:    true,
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func mustQuery(t testing.TB, raw string) url.Values {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}
