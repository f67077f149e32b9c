package s3store

import (
	"context"
	"os"
	"testing"

	"github.com/caddyupload/caddyupload/internal/realservers"
	"github.com/caddyupload/caddyupload/storage"
	"github.com/caddyupload/caddyupload/storage/storagetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	realservers.StopShared()
	os.Exit(code)
}

// storeOn builds a Store on a fresh bucket of srv; edit adjusts the config.
func storeOn(t *testing.T, srv *realservers.S3Server, edit func(*Config)) *Store {
	t.Helper()
	cfg := Config{
		Endpoint:        srv.Endpoint,
		Region:          srv.Region,
		Bucket:          srv.NewBucket(t),
		AccessKeyID:     srv.AccessKey,
		SecretAccessKey: srv.SecretKey,
		UsePathStyle:    true,
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// TestConformanceVersityGW and TestConformanceSeaweedFS run the suite on the
// real servers; in the fast tier (-short) TestConformanceFake stands in.
func TestConformanceVersityGW(t *testing.T) {
	realservers.RealOnly(t, "versitygw")
	t.Parallel()
	s := storeOn(t, realservers.SharedVersityGW(t), nil)
	storagetest.RunObjectStore(t, func(*testing.T) storage.ObjectStore { return s })
}

func TestConformanceSeaweedFS(t *testing.T) {
	realservers.RealOnly(t, "SeaweedFS")
	t.Parallel()
	s := storeOn(t, realservers.SharedSeaweedFS(t), nil)
	storagetest.RunObjectStore(t, func(*testing.T) storage.ObjectStore { return s })
}

// TestConformanceFake: the in-process fake of the fast tier passes the same
// suite as the real servers — it refuses what they refuse — so a pass in
// the fast tier is not the fake's leniency. It runs in both tiers.
func TestConformanceFake(t *testing.T) {
	t.Parallel()
	s := storeOn(t, realservers.SharedFake(t), nil)
	storagetest.RunObjectStore(t, func(*testing.T) storage.ObjectStore { return s })
}
