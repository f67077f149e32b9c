package boltledger

import (
	"errors"
	"fmt"

	"github.com/caddyupload/caddyupload/storage"
	bolt "go.etcd.io/bbolt"
)

// ErrFailed is matched (errors.Is) by every call on a ledger whose commit
// failed. bbolt rolls a failed commit back in memory only: the new meta
// page may already be visible through the mmap, so later reads could see a
// batch its callers were told failed, and after a failed fsync the kernel
// may have dropped the dirty pages. Like PostgreSQL after a failed fsync,
// the ledger stops; it is usable again once reopened (restart Caddy).
var ErrFailed = errors.New("ledger stopped after a failed commit")

// It is also storage.ErrUnavailable, so the module answers 503.
type failedError struct{ cause error }

func (e *failedError) Error() string {
	return fmt.Sprintf("%v: %v; restart Caddy once the disk is fixed", ErrFailed, e.cause)
}

func (e *failedError) Is(target error) bool {
	return target == ErrFailed || target == storage.ErrUnavailable
}

func (e *failedError) Unwrap() error { return e.cause }

// commitTx commits a write transaction; tests make it fail.
var commitTx = (*bolt.Tx).Commit

// fail stops the ledger after a failed commit.
func (l *Ledger) fail(cause error) error {
	err := &failedError{cause: cause}
	l.failure.CompareAndSwap(nil, err)
	return l.failure.Load()
}

// Failed returns the error that stopped the ledger, or nil while it works:
// for health checks.
func (l *Ledger) Failed() error {
	if err := l.failure.Load(); err != nil {
		return err
	}
	return nil
}
