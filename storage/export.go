package storage

import "context"

// Exporter and Importer move a ledger's records and outbox events to
// another ledger, e.g. from a bbolt file to PostgreSQL when a site outgrows
// one machine (caddy upload migrate).

// Exporter lists everything a ledger holds.
type Exporter interface {
	// Export calls rec for every record and ev for every outbox event, as
	// stored; an error from either stops it and is returned.
	Export(ctx context.Context, rec func(*Record) error, ev func(*Event) error) error
}

// Importer takes records and events exactly as another ledger held them.
type Importer interface {
	// Import stores recs and evs as given: statuses, deadlines, attempts
	// and parked states are kept, and no event is made for a record's
	// status. Records and events already there (same id) are left as
	// they are, so an interrupted import can run again.
	Import(ctx context.Context, recs []*Record, evs []*Event) error
	// RecountUsage counts every subject's usage from the records, as a
	// quota ledger keeps it; call it once the import is complete.
	RecountUsage(ctx context.Context) error
}
