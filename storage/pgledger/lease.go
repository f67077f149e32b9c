package pgledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddyupload/caddyupload/storage"
)

// A lease is one row of the leases table. One statement takes it: a new
// name is inserted; an existing one is taken over only when it has expired
// or is already the caller's (a renewal). Concurrent takers of one name
// queue on its row, and each sees the row its predecessor committed, so
// exactly one of them gets it. Every time is the database's (now()): the
// clocks of the instances never meet.
const (
	tryLeaseSQL = `INSERT INTO $S.leases AS l (name, holder, expires_at)
		VALUES ($1, $2, now() + $3::bigint * interval '1 microsecond')
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE l.expires_at < now() OR l.holder = excluded.holder
		RETURNING holder`
	releaseLeaseSQL = `DELETE FROM $S.leases WHERE name = $1 AND holder = $2`
)

// leaseSQL fills l's schema into a lease statement. The schema is taken
// from a statement newQueries filled in, so that the leases live beside
// the records they guard work on.
func (l *Ledger) leaseSQL(q string) (string, error) {
	s, ok := strings.CutPrefix(l.q.deleteEvent, "DELETE FROM ")
	if ok {
		s, ok = strings.CutSuffix(s, ".events WHERE id = $1")
	}
	if !ok {
		return "", errors.New("pgledger: cannot find the schema of the lease statements")
	}
	return strings.ReplaceAll(q, "$S", s), nil
}

// TryLease takes or renews lease name for holder until the database's
// now+ttl and reports whether holder has it. A lease whose holder did not
// renew it in time goes to the next taker. ttl is rounded up to whole
// microseconds.
func (l *Ledger) TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if err := l.begin(ctx); err != nil {
		return false, err
	}
	if err := checkLease(name, holder); err != nil {
		return false, err
	}
	if ttl <= 0 {
		return false, fmt.Errorf("lease %q: ttl %s is not positive", name, ttl)
	}
	q, err := l.leaseSQL(tryLeaseSQL)
	if err != nil {
		return false, err
	}
	micros := (ttl + time.Microsecond - 1) / time.Microsecond
	var held bool
	// Safe to repeat: a renewal by the same holder is idempotent, and a
	// take that committed before its answer was lost is a renewal then.
	err = l.retry(ctx, func() (bool, error) {
		var got string
		err := l.pool.QueryRow(ctx, q, name, holder, int64(micros)).Scan(&got)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			held = false
			return true, nil
		case err != nil:
			return true, err
		}
		held = got == holder
		return true, nil
	})
	if err != nil {
		return false, l.dbErr(ctx, err)
	}
	return held, nil
}

// ReleaseLease gives up holder's lease name at once; a lease held by
// another holder, or by none, is left alone.
func (l *Ledger) ReleaseLease(ctx context.Context, name, holder string) error {
	if err := l.begin(ctx); err != nil {
		return err
	}
	if err := checkLease(name, holder); err != nil {
		return err
	}
	q, err := l.leaseSQL(releaseLeaseSQL)
	if err != nil {
		return err
	}
	err = l.retry(ctx, func() (bool, error) {
		_, err := l.pool.Exec(ctx, q, name, holder)
		return true, err
	})
	return l.dbErr(ctx, err)
}

// checkLease refuses what a text column cannot hold, and an empty holder,
// which would share every lease with every other empty one.
func checkLease(name, holder string) error {
	if !validText(name) || !validText(holder) || holder == "" {
		return fmt.Errorf("lease %q, holder %q: want valid UTF-8 without zero bytes and a holder", name, holder)
	}
	return nil
}

var _ storage.Leaser = (*Ledger)(nil)
