package boltledger

import (
	"errors"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage"
	bolt "go.etcd.io/bbolt"
)

// A commit that fails after its pages reached the file (as an fsync error
// leaves them: written, maybe visible through the mmap, not durable) stops
// the ledger: its callers are told it failed, and no later read or write
// answers from a state that may not be on disk, until the file is reopened.
func TestFailedCommitStopsTheLedger(t *testing.T) {
	for _, group := range []bool{false, true} {
		t.Run(map[bool]string{false: "single", true: "group"}[group], func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ledger.db")
			l := openTest(t, path, Options{NoGroupCommit: !group})
			ctx := t.Context()
			// Control: the ledger works before the failure.
			if err := l.Create(ctx, testRecord("before", "k0")); err != nil {
				t.Fatal(err)
			}

			commitTx = func(tx *bolt.Tx) error {
				if err := tx.Commit(); err != nil {
					return err
				}
				return syscall.EIO
			}
			err := l.Create(ctx, testRecord("lost", "k1"))
			commitTx = (*bolt.Tx).Commit
			if !errors.Is(err, ErrFailed) || !errors.Is(err, storage.ErrUnavailable) {
				t.Fatalf("create during the failed commit: %v", err)
			}
			for what, err := range map[string]error{
				"get of the failed write": func() error { _, err := l.Get(ctx, "lost"); return err }(),
				"get of an earlier write": func() error { _, err := l.Get(ctx, "before"); return err }(),
				"a later create":          l.Create(ctx, testRecord("after", "k2")),
				"a later update": func() error {
					_, err := l.Update(ctx, "before", func(*storage.Record) error { return nil })
					return err
				}(),
				"due sweep":       func() error { _, err := l.DueSweep(ctx, "s", time.Unix(1_900_000_000, 0), 10); return err }(),
				"ack of an event": l.AckEvent(ctx, "x"),
			} {
				if !errors.Is(err, ErrFailed) {
					t.Errorf("%s: %v, want ErrFailed", what, err)
				}
			}
			if l.Failed() == nil {
				t.Error("Failed() reports nothing")
			}

			// Reopened, the ledger works again.
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l2 := openTest(t, path, Options{NoGroupCommit: !group})
			if _, err := l2.Get(ctx, "before"); err != nil {
				t.Errorf("after reopening: %v", err)
			}
			if err := l2.Create(ctx, testRecord("again", "k3")); err != nil || l2.Failed() != nil {
				t.Errorf("create after reopening: %v", err)
			}
		})
	}
}
