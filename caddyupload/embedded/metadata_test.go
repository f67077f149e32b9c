package embedded

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/versity/versitygw/backend/meta"
)

func TestMetadataUsesXattrsWhereSupported(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "s3")
	// The test machine's temporary filesystem supports user xattrs; the
	// probe must see that and leave no file behind.
	if err := probeXattr(t.TempDir()); err != nil {
		t.Fatalf("probe on the temp dir: %v", err)
	}
	ms, sidecar, err := metadataStore(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ms.(meta.XattrMeta); !ok || sidecar != "" {
		t.Fatalf("got %T with sidecar %q, want xattrs", ms, sidecar)
	}
	entries, _ := os.ReadDir(dataDir)
	if len(entries) != 0 {
		t.Errorf("probe left %v in the data dir", entries)
	}
}

func TestMetadataSidecarStaysOnceChosen(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "s3")
	if err := os.MkdirAll(sidecarDir(dataDir), 0o700); err != nil {
		t.Fatal(err)
	}
	ms, sidecar, err := metadataStore(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ms.(meta.SideCar); !ok || sidecar != sidecarDir(dataDir) {
		t.Fatalf("got %T with sidecar %q, want the existing sidecar", ms, sidecar)
	}
}

func TestSidecarDirOutsideDataDir(t *testing.T) {
	dataDir := "/var/lib/caddy/upload/s3"
	sc := sidecarDir(dataDir)
	// versitygw compares the paths as strings.
	if strings.HasPrefix(sc, dataDir) {
		t.Fatalf("sidecar %s starts with the data dir %s", sc, dataDir)
	}
	if filepath.Dir(sc) != filepath.Dir(dataDir) {
		t.Fatalf("sidecar %s is not beside %s", sc, dataDir)
	}
}
