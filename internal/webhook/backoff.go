package webhook

import "time"

// backoff is the wait after the n-th failed attempt: full jitter over 1s
// doubling with each attempt, capped at limit, so that many events failing
// together do not come back together. jitter draws from [0, ceiling).
func backoff(n int, limit time.Duration, jitter func(ceiling time.Duration) time.Duration) time.Duration {
	return jitter(backoffCeiling(n, limit))
}

// backoffCeiling is 1s << (n-1), capped at limit.
func backoffCeiling(n int, limit time.Duration) time.Duration {
	if n < 1 {
		n = 1
	}
	// Past 1s<<32 the shift would approach overflow; any sane limit is
	// below it.
	if n-1 < 32 {
		if d := time.Second << (n - 1); d < limit {
			return d
		}
	}
	return limit
}
