package boltledger

import (
	"context"
	"fmt"
	"time"

	"github.com/caddyupload/caddyupload/storage"
	bolt "go.etcd.io/bbolt"
)

// bucketUsage maps storage.QuotaKey.Digest() to the encoded storage.Usage of
// that route and subject. Every write of a record puts its usage change in
// the same mutation list as the record, so the two never disagree; the
// group commit applies one op's mutations before the next op prepares, so
// creates of one subject in one batch see each other.
var bucketUsage = []byte("usage")

// admission is the quota check of a create: rec (status and sizes only)
// must fit lim at now.
type admission struct {
	rec *storage.Record
	lim storage.Limits
	now time.Time
}

// CreateWithin stores rec if it fits lim given its subject's usage at
// rec.CreatedAt; the check, the usage change and the record are one write.
// A create that does not fit writes nothing and returns a
// *storage.QuotaError.
func (l *Ledger) CreateWithin(ctx context.Context, rec *storage.Record, lim storage.Limits) error {
	if err := lim.Check(); err != nil {
		return err
	}
	prepare, err := createOpWithin(rec, &lim)
	if err != nil {
		return err
	}
	_, err = l.write(ctx, prepare)
	return err
}

// Usage returns the stored usage of key; zero if it has none.
func (l *Ledger) Usage(ctx context.Context, key storage.QuotaKey) (*storage.Usage, error) {
	var u *storage.Usage
	err := l.view(ctx, func(tx *bolt.Tx) error {
		var err error
		u, err = getUsage(tx, key.Digest())
		return err
	})
	return u, err
}

// newAdmission keeps what the check reads of rec, so that rec itself is not
// retained.
func newAdmission(rec *storage.Record, lim *storage.Limits) *admission {
	if lim == nil {
		return nil
	}
	return &admission{
		rec: &storage.Record{Status: rec.Status, Size: rec.Size, Internal: storage.RecordInternal{MaxSize: rec.Internal.MaxSize}},
		lim: *lim,
		now: rec.CreatedAt,
	}
}

// usageMutations applies changes to the stored usages and returns the puts
// that store them. adm, when set, first admits the create into the usage
// of key (which changes then include, or which only the rate token moves).
func usageMutations(tx *bolt.Tx, key storage.QuotaKey, changes []storage.UsageChange, adm *admission) ([]mutation, error) {
	if len(changes) == 0 && adm == nil {
		return nil, nil
	}
	type entry struct {
		digest []byte
		u      *storage.Usage
	}
	var entries []entry
	get := func(k storage.QuotaKey) (*storage.Usage, error) {
		d := k.Digest()
		for _, e := range entries {
			if string(e.digest) == string(d) {
				return e.u, nil
			}
		}
		u, err := getUsage(tx, d)
		if err != nil {
			return nil, err
		}
		entries = append(entries, entry{d, u})
		return u, nil
	}
	if adm != nil {
		u, err := get(key)
		if err != nil {
			return nil, err
		}
		if err := u.Admit(adm.rec, adm.lim, adm.now); err != nil {
			return nil, err
		}
	}
	for _, c := range changes {
		u, err := get(c.Key)
		if err != nil {
			return nil, err
		}
		u.Apply(c)
	}
	muts := make([]mutation, len(entries))
	for i, e := range entries {
		v, err := e.u.MarshalBinary()
		if err != nil {
			return nil, err
		}
		muts[i] = mutation{bucket: bucketUsage, key: e.digest, value: v}
	}
	return muts, nil
}

// getUsage decodes the usage under digest; the result shares no memory
// with tx.
func getUsage(tx *bolt.Tx, digest []byte) (*storage.Usage, error) {
	u := new(storage.Usage)
	if err := u.UnmarshalBinary(tx.Bucket(bucketUsage).Get(digest)); err != nil {
		return nil, fmt.Errorf("usage %x: %w", digest, err)
	}
	return u, nil
}

// ensureUsage creates the usage bucket of a file that has none (new, or
// written by a version without quotas) and counts the records already in
// it: pending ones and their bytes, confirmed ones into the totals. Windows
// start empty: their grain is only known once a limit with a window is
// checked.
func ensureUsage(tx *bolt.Tx) error {
	if tx.Bucket(bucketUsage) != nil {
		return nil
	}
	if _, err := tx.CreateBucket(bucketUsage); err != nil {
		return fmt.Errorf("creating bucket %s: %w", bucketUsage, err)
	}
	var changes []storage.UsageChange
	err := tx.Bucket(bucketRecords).ForEach(func(k, v []byte) error {
		rec, err := decodeRecord(v)
		if err != nil {
			return fmt.Errorf("record %s: %w", k, err)
		}
		changes = append(changes, storage.UsageChanges(nil, rec)...)
		return nil
	})
	if err != nil {
		return err
	}
	usages := map[string]*storage.Usage{}
	for _, c := range changes {
		d := string(c.Key.Digest())
		u := usages[d]
		if u == nil {
			u = new(storage.Usage)
			usages[d] = u
		}
		u.Apply(c)
	}
	b := tx.Bucket(bucketUsage)
	for d, u := range usages {
		v, err := u.MarshalBinary()
		if err != nil {
			return err
		}
		if err := b.Put([]byte(d), v); err != nil {
			return err
		}
	}
	return nil
}

var _ storage.QuotaLedger = (*Ledger)(nil)
