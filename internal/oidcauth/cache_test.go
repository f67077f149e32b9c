package oidcauth

import (
	"fmt"
	"testing"
	"time"
)

func TestTokenCacheExpiry(t *testing.T) {
	c := newTokenCache(10)
	now := time.Now()
	k := cacheKey("t1")
	c.put(k, &Identity{Subject: "a", Expiry: now.Add(time.Minute)}, now)
	if _, ok := c.get(k, now); !ok {
		t.Fatal("fresh entry missing")
	}
	if _, ok := c.get(k, now.Add(time.Minute)); ok {
		t.Fatal("entry served at its exp")
	}
	c.put(cacheKey("t2"), &Identity{Expiry: now}, now)
	if c.len() != 1 {
		t.Fatal("an already expired identity was cached")
	}
}

func TestTokenCacheBounded(t *testing.T) {
	const max = 100
	c := newTokenCache(max)
	now := time.Now()
	for i := range 10 * max {
		c.put(cacheKey(fmt.Sprint(i)), &Identity{Expiry: now.Add(time.Hour)}, now)
		if c.len() > max {
			t.Fatalf("%d entries after %d inserts, bound %d", c.len(), i+1, max)
		}
	}
	last := cacheKey(fmt.Sprint(10*max - 1))
	if _, ok := c.get(last, now); !ok {
		t.Fatal("the newest entry was evicted")
	}
}

func TestTokenCachePrefersExpired(t *testing.T) {
	c := newTokenCache(evictProbe)
	now := time.Now()
	for i := range evictProbe {
		c.put(cacheKey(fmt.Sprint(i)), &Identity{Expiry: now.Add(time.Second)}, now)
	}
	later := now.Add(2 * time.Second)
	c.put(cacheKey("new"), &Identity{Expiry: later.Add(time.Hour)}, later)
	if c.len() != 1 {
		t.Fatalf("%d entries, want only the live one", c.len())
	}
}
