package caddyupload

import (
	"testing"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

// oneServer is the S3-compatible server of a test that needs only one: a
// shared versitygw, or in the fast tier (-short) the in-process fake.
func oneServer(t *testing.T) *realservers.S3Server {
	t.Helper()
	if testing.Short() {
		return realservers.SharedFake(t)
	}
	return realservers.SharedVersityGW(t)
}
