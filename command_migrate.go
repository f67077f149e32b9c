package caddyupload

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/caddyupload/caddyupload/storage"
	"github.com/caddyupload/caddyupload/storage/boltledger"
	"github.com/caddyupload/caddyupload/storage/pgledger"
)

// migrateBatch is how many records one import transaction carries.
const migrateBatch = 1000

func migrateCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "migrate --from-bolt <ledger.db> --to-postgres <dsn> [--schema <name>]",
		Short: "Moves a bbolt ledger's records and webhook events to PostgreSQL",
		Long: `
Copies every upload record and outbox event of a bbolt ledger file into a
PostgreSQL ledger, as they are (statuses, deadlines, webhook attempts and
parked events kept), then counts each subject's usage for quotas. Stop
Caddy first: the file is locked while Caddy runs. Records already in the
PostgreSQL ledger (same id) are left alone, so an interrupted migration
can run again. Then point the routes at the new ledger with
"ledger postgres { dsn ... }" and start Caddy.`,
		Args: cobra.NoArgs,
		RunE: runMigrate,
	}
	c.Flags().String("from-bolt", "", "required: the bbolt ledger file (e.g. <data dir>/upload/ledger.db)")
	c.Flags().String("to-postgres", "", "required: the PostgreSQL connection string (e.g. postgres://user:pass@host/db)")
	c.Flags().String("schema", pgledger.DefaultSchema, "the PostgreSQL schema of the ledger")
	return c
}

func runMigrate(cmd *cobra.Command, _ []string) error {
	from, _ := cmd.Flags().GetString("from-bolt")
	dsn, _ := cmd.Flags().GetString("to-postgres")
	schema, _ := cmd.Flags().GetString("schema")
	if from == "" || dsn == "" {
		return fmt.Errorf("--from-bolt and --to-postgres are required")
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	src, err := boltledger.Open(from, boltledger.Options{Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("opening %s (stop Caddy first): %w", from, err)
	}
	defer src.Close()
	dst, err := pgledger.Open(ctx, dsn, pgledger.Options{Schema: schema})
	if err != nil {
		return err
	}
	defer dst.Close()
	n, e, err := migrate(ctx, src, dst)
	if err != nil {
		return fmt.Errorf("after %d records: %w", n, err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "moved %d records and %d webhook events to %s\n", n, e, dst.Identity())
	return nil
}

// migrate copies everything src holds into dst, records first (a batch a
// transaction), then the events, then counts usage.
func migrate(ctx context.Context, src storage.Exporter, dst storage.Importer) (records, events int, err error) {
	var batch []*storage.Record
	var evs []*storage.Event
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := dst.Import(ctx, batch, nil); err != nil {
			return err
		}
		records += len(batch)
		batch = batch[:0]
		return nil
	}
	err = src.Export(ctx, func(r *storage.Record) error {
		batch = append(batch, r)
		if len(batch) == migrateBatch {
			return flush()
		}
		return nil
	}, func(e *storage.Event) error {
		evs = append(evs, e)
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err == nil {
		err = dst.Import(ctx, nil, evs)
	}
	if err == nil {
		err = dst.RecountUsage(ctx)
	}
	return records, len(evs), err
}
