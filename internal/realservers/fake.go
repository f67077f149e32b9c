package realservers

import (
	"strings"
	"sync"
	"testing"

	"github.com/caddyupload/caddyupload/internal/fakes3"
)

// The in-process fake S3 server of the fast tier (go test -short). It
// checks what the real servers check on the requests this project makes
// (storagetest.RunObjectStore passes on it), but it is not one of them: the
// default tier still runs versitygw and SeaweedFS.
var fake struct {
	once sync.Once
	srv  *S3Server
	err  error
}

// SharedFake is an in-memory S3-compatible server shared by the tests of the
// binary, started on first use; it needs no binary and starts at once. It
// has no Process: it lives as long as the test binary.
func SharedFake(t testing.TB) *S3Server {
	t.Helper()
	fake.once.Do(func() {
		f, err := fakes3.Start(fakes3.Options{
			AccessKey: "AK" + strings.ToUpper(s3RandomHex(9)),
			SecretKey: s3RandomHex(20),
		})
		if err != nil {
			fake.err = err
			return
		}
		fake.srv = &S3Server{Name: "fake", Endpoint: f.Endpoint, Region: f.Region, AccessKey: f.AccessKey, SecretKey: f.SecretKey}
	})
	if fake.err != nil {
		t.Fatalf("fake S3 server: %v", fake.err)
	}
	return fake.srv
}

// StartFake is a fake S3 server of its own for t, closed when t ends.
func StartFake(t testing.TB) *S3Server {
	t.Helper()
	f, err := fakes3.Start(fakes3.Options{})
	if err != nil {
		t.Fatalf("fake S3 server: %v", err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return &S3Server{Name: "fake", Endpoint: f.Endpoint, Region: f.Region, AccessKey: f.AccessKey, SecretKey: f.SecretKey}
}

// RealOnly skips t in the fast tier (-short), for a test that needs a real
// process the fake cannot stand in for (Dex, or a named S3 server); without
// -short it does nothing, and the test runs (or fails) as always.
func RealOnly(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs %s: runs without -short", what)
	}
}
