package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"sync"
	"time"
)

// Leaser is implemented by ledgers shared by several processes: a lease
// names work only one of them may do at a time (sweeping a route's store,
// delivering a route's webhooks). Expiry is decided by the shared store's
// own clock, so the clocks of the processes do not matter. A lease is an
// economy, not a lock for correctness: the work it guards must stay safe
// when two processes do it at once (a holder paused past its lease).
type Leaser interface {
	// TryLease takes or renews lease name for holder until now+ttl; it
	// reports whether holder has it. A lease whose holder did not renew it
	// in time goes to the next taker.
	TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	// ReleaseLease gives up holder's lease name, so that the next taker
	// need not wait for it to expire; a lease held by another holder, or
	// by none, is left alone.
	ReleaseLease(ctx context.Context, name, holder string) error
}

// LeaseHolder names this process as a lease holder:
// "<host>/<pid>/<random>". Host and pid tell an operator which instance
// holds a lease; the random part keeps two processes apart where both are
// pid 1 in containers on hosts of one name. It is the same for the life of
// the process, across config reloads.
func LeaseHolder() string { return leaseHolder() }

var leaseHolder = sync.OnceValue(func() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return host + "/" + strconv.Itoa(os.Getpid()) + "/" + hex.EncodeToString(b)
})
