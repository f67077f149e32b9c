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

func TestConformanceVersityGW(t *testing.T) {
	t.Parallel()
	s := storeOn(t, realservers.SharedVersityGW(t), nil)
	storagetest.RunObjectStore(t, func(*testing.T) storage.ObjectStore { return s })
}

func TestConformanceSeaweedFS(t *testing.T) {
	t.Parallel()
	s := storeOn(t, realservers.SharedSeaweedFS(t), nil)
	storagetest.RunObjectStore(t, func(*testing.T) storage.ObjectStore { return s })
}
