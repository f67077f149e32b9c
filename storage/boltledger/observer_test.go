package boltledger

import (
	"errors"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// OnCommit hears of every commit, with the number of writes it held, and of
// a failed one with its error.
func TestOnCommit(t *testing.T) {
	for _, group := range []bool{false, true} {
		t.Run(map[bool]string{false: "single", true: "group"}[group], func(t *testing.T) {
			type commit struct {
				d      time.Duration
				writes int
				err    error
			}
			var mu sync.Mutex
			var seen []commit
			l := openTest(t, filepath.Join(t.TempDir(), "ledger.db"), Options{NoGroupCommit: !group, OnCommit: func(d time.Duration, writes int, err error) {
				mu.Lock()
				seen = append(seen, commit{d, writes, err})
				mu.Unlock()
			}})
			ctx := t.Context()
			if err := l.Create(ctx, testRecord("a", "ka")); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			if len(seen) != 1 || seen[0].writes != 1 || seen[0].err != nil || seen[0].d <= 0 {
				t.Fatalf("after one create: %+v", seen)
			}
			mu.Unlock()

			commitTx = func(tx *bolt.Tx) error {
				if err := tx.Commit(); err != nil {
					return err
				}
				return syscall.EIO
			}
			err := l.Create(ctx, testRecord("b", "kb"))
			commitTx = (*bolt.Tx).Commit
			if err == nil {
				t.Fatal("the failed commit succeeded")
			}
			mu.Lock()
			defer mu.Unlock()
			if len(seen) != 2 || seen[1].writes != 1 || !errors.Is(seen[1].err, syscall.EIO) {
				t.Fatalf("after a failed commit: %+v", seen)
			}
		})
	}
}
