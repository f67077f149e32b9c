package embedded

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/pkg/xattr"
	"github.com/versity/versitygw/backend/meta"
)

// metadataStore picks where the server keeps object metadata (ETag,
// Content-Type, multipart state): in user extended attributes of the data
// files when the filesystem supports them, else in a sidecar directory
// beside the data dir. Once a sidecar directory exists it stays in use, so
// metadata is never split between the two.
func metadataStore(dataDir string) (meta.MetadataStorer, string, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, "", fmt.Errorf("data dir: %v", err)
	}
	sidecar := sidecarDir(dataDir)
	if fi, err := os.Stat(sidecar); err == nil && fi.IsDir() {
		sc, err := meta.NewSideCar(sidecar)
		return sc, sidecar, err
	}
	err := probeXattr(dataDir)
	if err == nil {
		return meta.XattrMeta{}, "", nil
	}
	fmt.Fprintf(os.Stderr, "no user extended attributes in %s (%v); keeping metadata in %s\n", dataDir, err, sidecar)
	if err := os.MkdirAll(sidecar, 0o700); err != nil {
		return nil, "", fmt.Errorf("sidecar dir: %v", err)
	}
	sc, err := meta.NewSideCar(sidecar)
	return sc, sidecar, err
}

// sidecarDir is a sibling of the data dir whose path does not start with
// the data dir's (versitygw refuses that as "inside the root").
func sidecarDir(dataDir string) string {
	return filepath.Join(filepath.Dir(dataDir), "metadata-"+filepath.Base(dataDir))
}

// probeXattr writes, reads back and removes a user attribute on a fresh
// file: some filesystems accept reads but refuse writes.
func probeXattr(dir string) error {
	f, err := os.CreateTemp(dir, ".xattr-probe-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	const name = "user.caddyupload.probe"
	if err := xattr.FSet(f, name, []byte("1")); err != nil {
		return err
	}
	if v, err := xattr.FGet(f, name); err != nil || string(v) != "1" {
		return fmt.Errorf("attribute not read back: %v", err)
	}
	return nil
}
