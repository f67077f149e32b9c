package boltledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caddyupload/caddyupload/storage"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// op is one queued write.
type op struct {
	ctx     context.Context
	prepare prepareFunc
	done    chan result // buffered: the writer never blocks on a waiter
}

type result struct {
	rec *storage.Record
	err error
	// panicked holds what an update function panicked with; the caller's
	// goroutine panics with it again.
	panicked any
}

// write runs prepare in a write transaction and returns when the outcome is
// durable. The answer always tells the truth: a caller whose ctx ends while
// its write is queued still waits for the (short) batch rather than guess.
func (l *Ledger) write(ctx context.Context, prepare prepareFunc) (*storage.Record, error) {
	o := &op{ctx: ctx, prepare: prepare, done: make(chan result, 1)}
	if err := l.submit(ctx, []*op{o}); err != nil {
		return nil, err
	}
	r := <-o.done
	if r.panicked != nil {
		panic(r.panicked)
	}
	return r.rec, r.err
}

// submit hands ops to the writer under one lock, so that it takes them into
// one transaction (with NoGroupCommit it runs them here); each op's result
// arrives on its done channel.
func (l *Ledger) submit(ctx context.Context, ops []*op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := l.Failed(); err != nil {
		return err
	}
	if l.noGroup {
		if l.closed.Load() {
			return ErrClosed
		}
		l.runBatch(ops)
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing {
		return ErrClosed
	}
	l.queue = append(l.queue, ops...)
	l.cond.Signal()
	return nil
}

// writeLoop takes every queued write, commits them in one transaction and
// starts over at once: writes that arrive during a commit form the next
// batch, so the batch size follows the load without a fixed delay. Unlike
// bbolt's db.Batch it never runs a function twice, so update functions need
// not be idempotent. After Close it drains the queue, then returns.
func (l *Ledger) writeLoop() {
	defer close(l.writerDone)
	var spare []*op
	for {
		l.mu.Lock()
		for len(l.queue) == 0 && !l.closing {
			l.cond.Wait()
		}
		batch := l.queue
		l.queue = spare[:0]
		l.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		l.runBatch(batch)
		clear(batch)
		spare = batch
	}
}

// runBatch applies ops one after the other in one transaction, so each sees
// the writes of those before it, and commits once. An op that fails in
// prepare has written nothing and fails alone; a failed write or commit
// fails every op that had written, since none of it is stored.
func (l *Ledger) runBatch(ops []*op) {
	results := make([]result, len(ops))
	defer func() {
		// A panic out of bbolt must not reach a waiter as a success.
		v := recover()
		for i, o := range ops {
			if v != nil {
				results[i] = result{err: fmt.Errorf("ledger write panicked: %v", v)}
			}
			o.done <- results[i]
		}
		if v != nil {
			panic(v)
		}
	}()

	if err := l.Failed(); err != nil {
		for i := range results {
			results[i].err = err
		}
		return
	}
	tx, err := l.db.Begin(true)
	if err != nil {
		if errors.Is(err, berrors.ErrDatabaseNotOpen) {
			err = ErrClosed
		}
		for i := range results {
			results[i].err = err
		}
		return
	}
	written := 0
	for i, o := range ops {
		if err := o.ctx.Err(); err != nil {
			results[i].err = err
			continue
		}
		muts, rec, panicked, err := prepareOp(o, tx)
		if panicked != nil || err != nil {
			results[i] = result{err: err, panicked: panicked}
			continue
		}
		if err := applyMutations(tx, muts); err != nil {
			// Part of this op is in the transaction: none of it can be kept.
			tx.Rollback()
			failWritten(results[:i], fmt.Errorf("writing ledger: %w", err))
			for j := i; j < len(ops); j++ {
				results[j] = result{err: fmt.Errorf("writing ledger: %w", err)}
			}
			return
		}
		results[i].rec = rec
		written++
	}
	if written == 0 {
		tx.Rollback()
		return
	}
	start := time.Now()
	err = commitTx(tx)
	if l.onCommit != nil {
		l.onCommit(time.Since(start), written, err)
	}
	if err != nil {
		failWritten(results, l.fail(fmt.Errorf("committing ledger: %w", err)))
		return
	}
	l.commits.Add(1)
	l.writes.Add(uint64(written))
}

// failWritten replaces the success of every op that had written with err.
func failWritten(results []result, err error) {
	for i := range results {
		if results[i].err == nil && results[i].panicked == nil {
			results[i] = result{err: err}
		}
	}
}

func prepareOp(o *op, tx *bolt.Tx) (muts []mutation, rec *storage.Record, panicked any, err error) {
	defer func() {
		if v := recover(); v != nil {
			panicked = v
		}
	}()
	muts, rec, err = o.prepare(tx)
	return muts, rec, nil, err
}
