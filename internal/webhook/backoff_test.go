package webhook

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestBackoffCeiling: the wait after n failures is drawn from [0, 1s <<
// (n-1)), capped at the limit. A jitter that returns its largest value
// shows the ceiling exactly, so a backoff that ignores the draw (always
// 0) or the cap fails here.
func TestBackoffCeiling(t *testing.T) {
	largest := func(ceiling time.Duration) time.Duration { return ceiling - 1 }
	for _, tc := range []struct {
		n     int
		limit time.Duration
		want  time.Duration
	}{
		{1, time.Minute, time.Second},
		{2, time.Minute, 2 * time.Second},
		{4, time.Minute, 8 * time.Second},
		{6, time.Minute, 32 * time.Second},
		{7, time.Minute, time.Minute},
		{12, time.Minute, time.Minute},
		{200, time.Minute, time.Minute},
		{12, time.Hour, 2048 * time.Second},
		{13, time.Hour, time.Hour},
		{1, time.Second, time.Second},
		{3, 3 * time.Second, 3 * time.Second},
	} {
		if got := backoff(tc.n, tc.limit, largest); got != tc.want-1 {
			t.Errorf("backoff(%d, %s) at the largest draw = %s, want %s", tc.n, tc.limit, got, tc.want-1)
		}
	}
}

// TestBackoffJitter: with the real random source, waits stay within
// [0, ceiling) and spread over it (full jitter), rather than sitting at
// either end. 400 draws all landing in one quarter has odds of 2^-800.
func TestBackoffJitter(t *testing.T) {
	for _, tc := range []struct {
		n       int
		limit   time.Duration
		ceiling time.Duration
	}{
		{1, time.Minute, time.Second},
		{3, time.Minute, 4 * time.Second},
		{12, time.Minute, time.Minute},
		{1000, time.Minute, time.Minute},
	} {
		lo, hi := tc.ceiling, time.Duration(-1)
		for range 400 {
			d := backoff(tc.n, tc.limit, rand.N[time.Duration])
			if d < 0 || d >= tc.ceiling {
				t.Fatalf("backoff(%d, %s) = %s, want within [0, %s)", tc.n, tc.limit, d, tc.ceiling)
			}
			lo, hi = min(lo, d), max(hi, d)
		}
		if lo > tc.ceiling/4 || hi < tc.ceiling*3/4 {
			t.Errorf("backoff(%d, %s) drew only within [%s, %s] of [0, %s)", tc.n, tc.limit, lo, hi, tc.ceiling)
		}
	}
}

// TestDispatcherJitter: the dispatcher draws its waits from the real
// random source by default.
func TestDispatcherJitter(t *testing.T) {
	d, err := newDispatcher(Config{URL: "http://127.0.0.1:9/h", Secret: []byte(testSecret)}.WithDefaults(), Options{Outbox: newOutbox(t.Name(), time.Now), Route: "docs"})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[time.Duration]bool{}
	for range 20 {
		seen[d.jitter(time.Hour)] = true
	}
	if len(seen) < 10 {
		t.Errorf("20 draws gave %d distinct waits", len(seen))
	}
}
