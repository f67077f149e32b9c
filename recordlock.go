package caddyupload

import (
	"sync"
	"sync/atomic"
)

// recordLocks serializes work on one record within this process: two
// completions of one upload (a client's retry while the first still runs,
// two tabs) would otherwise assemble and check the object at the same
// time, and storage can show one of them an object in the middle of being
// written. The second waits and then answers what the first decided.
type recordLocks struct {
	mu    sync.Mutex
	locks map[string]*recordLock
}

type recordLock struct {
	sync.Mutex
	refs int
}

// lockWaits counts callers waiting for a record's lock; tests watch it.
var lockWaits atomic.Int64

// lock takes id's lock; waited reports whether another holder made it wait.
func (l *recordLocks) lock(id string) (unlock func(), waited bool) {
	l.mu.Lock()
	if l.locks == nil {
		l.locks = make(map[string]*recordLock)
	}
	rl := l.locks[id]
	if rl == nil {
		rl = new(recordLock)
		l.locks[id] = rl
	}
	rl.refs++
	l.mu.Unlock()
	if !rl.TryLock() {
		waited = true
		lockWaits.Add(1)
		rl.Lock()
		lockWaits.Add(-1)
	}
	return func() {
		rl.Unlock()
		l.mu.Lock()
		if rl.refs--; rl.refs == 0 {
			delete(l.locks, id)
		}
		l.mu.Unlock()
	}, waited
}
