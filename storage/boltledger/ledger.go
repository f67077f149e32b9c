// Package boltledger is the storage.Ledger backed by a bbolt file. Writes
// from concurrent callers are committed together (group commit): each one is
// on disk when its call returns, yet many share one fsync.
package boltledger

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyupload/caddyupload/storage"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Bucket names, created once at Open.
var (
	// bucketRecords maps id to the encoded record.
	bucketRecords = []byte("records")
	// bucketKeys maps store || 0x00 || key to id.
	bucketKeys = []byte("keys")
	// bucketDue holds one nested bucket per store whose keys are
	// bigEndian(ExpiresAt nanos) || id, for pending records only.
	bucketDue = []byte("due")
	// bucketEvents maps event id to the encoded outbox event.
	bucketEvents = []byte("events")
	// bucketEventsDue holds route || 0x00 || bigEndian(NextAttempt nanos)
	// || event id for every unparked event. Keys rather than nested
	// buckets, because a route may be empty and a bucket name may not.
	bucketEventsDue = []byte("events_due")
	// bucketEventsParked holds route || 0x00 || bigEndian(CreatedAt nanos)
	// || event id for every parked event.
	bucketEventsParked = []byte("events_parked")
)

// DefaultTimeout is how long Open waits for the file lock by default.
const DefaultTimeout = 3 * time.Second

var (
	// ErrClosed is returned by every call on a closed Ledger.
	ErrClosed = errors.New("ledger closed")
	// ErrLocked is matched (errors.Is) by the error of an Open that timed
	// out waiting for the file lock.
	ErrLocked = errors.New("ledger locked")
)

// Options tune Open.
type Options struct {
	// Timeout is how long to wait for the file lock held by another
	// handle on the same file. Default: DefaultTimeout.
	Timeout time.Duration
	// NoGroupCommit commits each write in its own transaction in the
	// caller's goroutine. Durability is the same; throughput under
	// concurrency is lower. Default: false.
	NoGroupCommit bool
	// OnCommit, when set, is told of every write transaction that reached
	// commit: how long the commit took, how many writes it held and its
	// error (metrics). It runs on the writer's goroutine: keep it fast.
	OnCommit func(d time.Duration, writes int, err error)
}

// Ledger is a storage.Ledger in one bbolt file. It is safe for concurrent use.
type Ledger struct {
	db       *bolt.DB
	path     string
	noGroup  bool
	onCommit func(time.Duration, int, error)

	mu      sync.Mutex
	cond    *sync.Cond // signals the writer: queue non-empty or closing
	queue   []*op
	closing bool
	closed  atomic.Bool
	// writerDone is closed when the writer goroutine has returned; with
	// NoGroupCommit there is no writer and it is closed from the start.
	writerDone chan struct{}

	writes  atomic.Uint64
	commits atomic.Uint64
	// failure is set once a commit failed; every call then fails with it.
	failure atomic.Pointer[failedError]
}

// Stats are counters since Open.
type Stats struct {
	// Writes counts successful writes: Create, Update and the changes of
	// outbox events.
	Writes uint64
	// Commits counts committed bbolt transactions (each one fsync).
	Commits uint64
}

// Open opens or creates the ledger file at path, creating missing parent
// directories with mode 0700 and the file with mode 0600.
func Open(path string, opts Options) (*Ledger, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating ledger directory: %w", err)
	}
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, os.ErrNotExist)

	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, &lockedError{path: path}
	}
	if err != nil {
		return nil, fmt.Errorf("opening ledger %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketRecords, bucketKeys, bucketDue, bucketEvents, bucketEventsDue, bucketEventsParked} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("creating bucket %s: %w", name, err)
			}
		}
		return ensureUsage(tx)
	})
	if err == nil && created {
		// A new file's directory entry must be durable too, or a crash
		// could lose the whole file along with the records in it.
		err = syncDir(dir)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initializing ledger %s: %w", path, err)
	}

	l := &Ledger{db: db, path: path, noGroup: opts.NoGroupCommit, onCommit: opts.OnCommit, writerDone: make(chan struct{})}
	l.cond = sync.NewCond(&l.mu)
	if l.noGroup {
		close(l.writerDone)
	} else {
		go l.writeLoop()
	}
	return l, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Close lets every write already queued finish, then closes the file.
// Writes that arrive later fail with ErrClosed. Closing twice is a no-op.
func (l *Ledger) Close() error {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return nil
	}
	l.closing = true
	l.closed.Store(true)
	l.cond.Broadcast()
	l.mu.Unlock()

	<-l.writerDone
	// bbolt's Close waits for transactions still running, which covers
	// writes in progress with NoGroupCommit and reads.
	return l.db.Close()
}

// Path is the file the ledger lives in.
func (l *Ledger) Path() string { return l.path }

// Identity is the ledger's file as given to Open (the Caddy module gives an
// absolute path): every handle on that file reads the same records.
func (l *Ledger) Identity() string { return l.path }

var _ storage.Identified = (*Ledger)(nil)

// Stats returns the counters since Open.
func (l *Ledger) Stats() Stats {
	return Stats{Writes: l.writes.Load(), Commits: l.commits.Load()}
}

// lockedError explains what to do when the file is held by another handle:
// in practice a second Caddy on the same data directory.
type lockedError struct{ path string }

func (e *lockedError) Error() string {
	return fmt.Sprintf("ledger %s is locked by another process (is another Caddy running with the same data directory? "+
		"to change the config of a running Caddy use `caddy reload`)", e.path)
}

func (e *lockedError) Is(target error) bool {
	return target == ErrLocked || target == berrors.ErrTimeout
}

var (
	_ storage.Ledger = (*Ledger)(nil)
	_ storage.Outbox = (*Ledger)(nil)
)
