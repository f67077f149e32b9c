package pgledger

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddyupload/caddyupload/storage"
)

const (
	// flushers is how many batches may be in flight at once. One, as in
	// the bbolt ledger: creates that arrive during a commit make the next
	// batch larger, and larger batches cost the server less per row (on 2
	// cores two flushers made smaller batches and fewer creates/s).
	flushers = 1
	// maxBatch bounds the rows of one statement.
	maxBatch = 256
	// batchTimeout bounds one batch. Callers wait for their batch's answer
	// even when their own context ends, so that the answer is the truth
	// (the record is stored, or it is not).
	batchTimeout = 30 * time.Second
)

// groupCommit gathers the creates of concurrent callers (those without an
// outbox event, which is nearly all) into one INSERT of many rows: one
// round trip and one commit for all of them. A row that conflicts is left
// out by ON CONFLICT DO NOTHING and fails alone. Creates that arrive while a
// batch is in flight form the next one, so batches grow with the load
// without a fixed delay.
type groupCommit struct {
	l *Ledger

	mu      sync.Mutex
	cond    *sync.Cond
	queue   []*createReq
	closing bool
	wg      sync.WaitGroup
}

type createReq struct {
	ctx  context.Context
	rec  *storage.Record // read only for error messages, before create returns
	args []any           // recordArgs
	res  chan error      // buffered: the flusher never blocks on a caller
}

func newGroupCommit(l *Ledger) *groupCommit {
	g := &groupCommit{l: l}
	g.cond = sync.NewCond(&g.mu)
	for range flushers {
		g.wg.Go(g.flushLoop)
	}
	return g
}

// create queues one create and waits for its outcome.
func (g *groupCommit) create(ctx context.Context, rec *storage.Record, args []any) error {
	r := &createReq{ctx: ctx, rec: rec, args: args, res: make(chan error, 1)}
	g.mu.Lock()
	if g.closing {
		g.mu.Unlock()
		return ErrClosed
	}
	g.queue = append(g.queue, r)
	g.cond.Signal()
	g.mu.Unlock()
	return <-r.res
}

// close lets the queued creates finish and stops the flushers.
func (g *groupCommit) close() {
	g.mu.Lock()
	g.closing = true
	g.cond.Broadcast()
	g.mu.Unlock()
	g.wg.Wait()
}

func (g *groupCommit) flushLoop() {
	for {
		g.mu.Lock()
		for len(g.queue) == 0 && !g.closing {
			g.cond.Wait()
		}
		if len(g.queue) == 0 {
			g.mu.Unlock()
			return
		}
		batch := g.take()
		if len(g.queue) > 0 {
			g.cond.Signal() // more than one batch's worth: another flusher
		}
		g.mu.Unlock()
		if len(batch) > 0 {
			g.run(batch)
		}
	}
}

// take removes up to maxBatch creates from the queue, at most one per id
// and per (store, key): of two rows that clash inside one statement, which
// one ON CONFLICT keeps is not the queue's order. The second waits for the
// next batch and then conflicts with the first, as it would have alone.
// Creates whose caller has gone are answered at once. g.mu is held.
func (g *groupCommit) take() []*createReq {
	var batch []*createReq
	ids := map[string]bool{}
	keys := map[string]bool{}
	rest := g.queue[:0]
	for _, r := range g.queue {
		if err := r.ctx.Err(); err != nil {
			r.res <- err
			continue
		}
		id, key := r.rec.ID, r.rec.Internal.Store+"\x00"+r.rec.Key
		if len(batch) == maxBatch || ids[id] || keys[key] {
			rest = append(rest, r)
			continue
		}
		ids[id], keys[key] = true, true
		batch = append(batch, r)
	}
	clear(g.queue[len(rest):])
	g.queue = rest
	return batch
}

// run inserts batch in one statement and answers every create in it.
func (g *groupCommit) run(batch []*createReq) {
	l := g.l
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()

	// One array per column: unnest turns them back into rows.
	cols := make([]any, 12, 14)
	for c := range cols {
		cols[c] = columnSlice(c, len(batch))
	}
	for _, r := range batch {
		for c, v := range r.args {
			cols[c] = appendColumn(cols[c], v)
		}
	}
	keys, charges := groupUsageColumns(batch)
	cols = append(cols, keys, charges)

	lost := false
	inserted := map[string]bool{}
	err := l.retry(ctx, func() (bool, error) {
		rows, err := l.pool.Query(ctx, l.qq.insertRecords, cols...)
		if err == nil {
			var ids []string
			ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
			for _, id := range ids {
				inserted[id] = true
			}
		}
		lost = lost || l.connLost(ctx, err)
		// Safe to try again: rows the lost attempt committed are left out
		// by ON CONFLICT and recognized below.
		return true, err
	})
	if err != nil {
		err = l.dbErr(ctx, err)
		for _, r := range batch {
			r.res <- err
		}
		return
	}
	l.commits.Add(1)
	l.writes.Add(uint64(len(inserted)))

	var refused []*createReq
	for _, r := range batch {
		if inserted[r.rec.ID] {
			r.res <- nil
		} else {
			refused = append(refused, r)
		}
	}
	if len(refused) > 0 {
		g.explain(ctx, refused, lost)
	}
}

// explain answers the creates ON CONFLICT left out: a conflict with the
// stored id or key, or, after a lost connection, a success when the stored
// record is exactly this create's (the lost attempt committed it).
func (g *groupCommit) explain(ctx context.Context, refused []*createReq, lost bool) {
	l := g.l
	ids := make([]string, len(refused))
	for i, r := range refused {
		ids[i] = r.rec.ID
	}
	stored := map[string][]byte{}
	rows, err := l.pool.Query(ctx, l.q.recordData, ids)
	if err == nil {
		var (
			id   string
			data []byte
		)
		_, err = pgx.ForEachRow(rows, []any{&id, &data}, func() error {
			stored[id] = bytes.Clone(data)
			return nil
		})
	}
	for _, r := range refused {
		data, idTaken := stored[r.rec.ID]
		switch {
		case lost && idTaken && bytes.Equal(data, r.args[len(r.args)-1].([]byte)):
			l.writes.Add(1)
			r.res <- nil
		case idTaken:
			r.res <- fmt.Errorf("record %s exists: %w", r.rec.ID, storage.ErrConflict)
		case err != nil && lost:
			// Whether the lost attempt stored it cannot be told.
			r.res <- l.dbErr(ctx, err)
		default:
			r.res <- fmt.Errorf("key %q in store %q is taken: %w", r.rec.Key, r.rec.Internal.Store, storage.ErrConflict)
		}
	}
}

// columnSlice is an empty slice for column c of recordCols, typed so that
// pgx sends it as the array unnest expects.
func columnSlice(c, n int) any {
	switch c {
	case 7, 9, 10:
		return make([]time.Time, 0, n)
	case 8:
		return make([]bool, 0, n)
	case 11:
		return make([][]byte, 0, n)
	}
	return make([]string, 0, n)
}

func appendColumn(col, v any) any {
	switch s := col.(type) {
	case []time.Time:
		return append(s, v.(time.Time))
	case []bool:
		return append(s, v.(bool))
	case [][]byte:
		return append(s, v.([]byte))
	default:
		return append(s.([]string), v.(string))
	}
}
