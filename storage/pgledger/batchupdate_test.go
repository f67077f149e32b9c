package pgledger

import (
	"testing"

	"github.com/caddyupload/caddyupload/internal/realservers"
	"github.com/caddyupload/caddyupload/storage"
	"github.com/caddyupload/caddyupload/storage/storagetest"
)

func TestBatchUpdateConformance(t *testing.T) {
	dsn := realservers.Postgres(t)
	for _, mode := range testModes {
		t.Run(mode.name, func(t *testing.T) {
			storagetest.RunBatchUpdate(t, func(t *testing.T, dir string) storage.Ledger {
				opts := mode.opts
				opts.Schema = schemaFor(dir)
				return openTest(t, dsn, opts)
			})
		})
	}
}
