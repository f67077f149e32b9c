package boltledger

import (
	"context"

	"github.com/caddyupload/caddyupload/storage"
)

// UpdateEach queues one update per id at once, so that the writer takes
// them all into one transaction: one commit for the lot rather than one
// wait, wake-up and share of a commit each. The writer applies them one
// after the other, each seeing the writes before it, and an update that
// fails (missing record, error from fn) fails alone, as in any batch.
func (l *Ledger) UpdateEach(ctx context.Context, ids []string, fn func(int, *storage.Record) error) ([]*storage.Record, []error) {
	recs, errs := make([]*storage.Record, len(ids)), make([]error, len(ids))
	if len(ids) == 0 {
		return recs, errs
	}
	ops := make([]*op, len(ids))
	for i, id := range ids {
		ops[i] = &op{ctx: ctx, prepare: updateOp(id, func(rec *storage.Record) error { return fn(i, rec) }), done: make(chan result, 1)}
	}
	if err := l.submit(ctx, ops); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return recs, errs
	}
	var panicked any
	for i, o := range ops {
		r := <-o.done
		recs[i], errs[i] = r.rec, r.err
		if r.panicked != nil && panicked == nil {
			panicked = r.panicked
		}
	}
	if panicked != nil {
		panic(panicked)
	}
	return recs, errs
}

var _ storage.BatchUpdater = (*Ledger)(nil)
