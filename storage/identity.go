package storage

// Identified is implemented by a ledger (and its outbox) that can name the
// durable store behind it, e.g. the absolute path of a bbolt file. Two
// values with the same identity read and write the same records: during a
// config reload the old and the new config share one, and webhook delivery
// uses the identity so that only one of them delivers a route's events.
type Identified interface {
	Identity() string
}
