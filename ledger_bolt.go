package caddyupload

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddyupload/caddyupload/storage"
	"github.com/caddyupload/caddyupload/storage/boltledger"
)

func init() {
	caddy.RegisterModule(BoltLedger{})
}

// ledgers holds one open bbolt handle per file for the whole process.
// Caddy provisions a new config before it stops the old one, and a second
// bolt.Open of a file this process holds would wait for its own lock; the
// pool hands the new config the same handle instead.
var ledgers = caddy.NewUsagePool()

// BoltLedger keeps upload records in an embedded bbolt file.
type BoltLedger struct {
	// Path is the ledger file. Default: upload/ledger.db under Caddy's
	// data directory.
	Path string `json:"path,omitempty"`
	// LockTimeout is how long to wait for the file lock held by another
	// process. Default: 5s.
	LockTimeout caddy.Duration `json:"lock_timeout,omitempty"`

	key     string
	ledger  storage.Ledger
	release func()
}

// CaddyModule returns the Caddy module information.
func (BoltLedger) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "upload.ledger.bolt",
		New: func() caddy.Module { return new(BoltLedger) },
	}
}

type sharedLedger struct{ *boltledger.Ledger }

func (l sharedLedger) Destruct() error { return l.Close() }

// Provision opens the file, or shares the handle already open.
func (b *BoltLedger) Provision(ctx caddy.Context) error {
	path := caddy.NewReplacer().ReplaceAll(b.Path, "")
	if path == "" {
		path = filepath.Join(caddy.AppDataDir(), "upload", "ledger.db")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	timeout := time.Duration(b.LockTimeout)
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	val, _, err := ledgers.LoadOrNew(abs, func() (caddy.Destructor, error) {
		l, err := boltledger.Open(abs, boltledger.Options{Timeout: timeout, OnCommit: observeLedgerCommit})
		if err != nil {
			return nil, err
		}
		return sharedLedger{l}, nil
	})
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	l := val.(sharedLedger).Ledger
	b.key = abs
	b.ledger = l
	// The admin API reaches the outbox through the registry, whichever
	// ledger module opened it.
	b.release = registerOutbox(abs, l)
	return nil
}

// Ledger implements LedgerBackend.
func (b *BoltLedger) Ledger() storage.Ledger { return b.ledger }

// Cleanup releases this config's use of the file; the last user closes it.
func (b *BoltLedger) Cleanup() error {
	if b.key == "" {
		return nil
	}
	if b.release != nil {
		b.release()
	}
	_, err := ledgers.Delete(b.key)
	return err
}

var (
	_ caddy.Provisioner  = (*BoltLedger)(nil)
	_ caddy.CleanerUpper = (*BoltLedger)(nil)
	_ LedgerBackend      = (*BoltLedger)(nil)
)
