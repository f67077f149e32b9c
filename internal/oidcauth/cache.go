package oidcauth

import (
	"crypto/sha256"
	"sync"
	"time"
)

// evictProbe is how many entries an insert into a full cache examines.
const evictProbe = 8

// tokenCache remembers verified tokens until their exp, keyed by the
// SHA-256 of the raw token so the cache never holds the tokens themselves.
// Eviction is approximately random (Go's map iteration order), preferring
// expired entries: O(1) per insert, no bookkeeping on hits.
type tokenCache struct {
	max int
	mu  sync.RWMutex
	m   map[[sha256.Size]byte]*Identity
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, m: make(map[[sha256.Size]byte]*Identity)}
}

func cacheKey(raw string) [sha256.Size]byte { return sha256.Sum256([]byte(raw)) }

// get returns the identity if the token was verified and has not reached
// its exp. Leeway is not applied here: past exp the token is verified
// again in full.
func (c *tokenCache) get(key [sha256.Size]byte, now time.Time) (*Identity, bool) {
	c.mu.RLock()
	id, ok := c.m[key]
	c.mu.RUnlock()
	if !ok || !now.Before(id.Expiry) {
		return nil, false
	}
	return id, true
}

func (c *tokenCache) put(key [sha256.Size]byte, id *Identity, now time.Time) {
	if !now.Before(id.Expiry) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok && len(c.m) >= c.max {
		c.evictLocked(now)
	}
	c.m[key] = id
}

// evictLocked removes the expired entries among a few arbitrary ones, or
// the first of them if none has expired.
func (c *tokenCache) evictLocked(now time.Time) {
	var victim [sha256.Size]byte
	removed, seen := false, 0
	for k, id := range c.m {
		if seen == 0 {
			victim = k
		}
		if !now.Before(id.Expiry) {
			delete(c.m, k)
			removed = true
		}
		if seen++; seen >= evictProbe {
			break
		}
	}
	if !removed {
		delete(c.m, victim)
	}
}

func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
