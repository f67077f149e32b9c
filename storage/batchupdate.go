package storage

import "context"

// BatchUpdater is implemented by ledgers that can update many records in
// one transaction: one commit (one fsync, one round trip) for all of them
// rather than one each. The sweeper claims due records with it.
type BatchUpdater interface {
	// UpdateEach applies fn to the current record of every id, as Update
	// does for one: fn(i, rec) is given the record of ids[i] as stored
	// when the transaction reads it (a record changed since the caller
	// listed it is read again), and an error from fn aborts that record's
	// update alone. It returns, at index i, the stored record (a copy) or
	// the error for ids[i]; a record that is not stored (ErrNotFound, an
	// error from fn, a conflict) does not keep the others from being
	// stored. A failure to write or commit fails every record it did not
	// store. Every record reported stored is durable when UpdateEach
	// returns. The calls of fn of one UpdateEach never run concurrently;
	// fn may run more than once for a record (a batch tried again), and
	// only its last run counts.
	// Ids repeated in ids are updated one after the other, each run seeing
	// the one before. fn must not call the ledger.
	UpdateEach(ctx context.Context, ids []string, fn func(i int, rec *Record) error) ([]*Record, []error)
}
