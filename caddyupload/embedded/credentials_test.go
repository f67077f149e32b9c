package embedded

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestCredentialsGeneratedOnce(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "upload", "s3")
	path := credentialsPath(dataDir)
	if filepath.Dir(path) != filepath.Dir(dataDir) {
		t.Fatalf("credentials at %s, want beside %s", path, dataDir)
	}
	first, err := loadOrCreateCredentials(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.AccessKeyID) != 20 || len(first.SecretAccessKey) != 52 {
		t.Errorf("key lengths %d/%d, want 20/52", len(first.AccessKeyID), len(first.SecretAccessKey))
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	again, err := loadOrCreateCredentials(path)
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Error("credentials changed on the second load")
	}
}

func TestCredentialsConcurrentCreatorsAgree(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s3-credentials.json")
	const n = 8
	got := make([]storedCredentials, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := loadOrCreateCredentials(path)
			if err != nil {
				t.Error(err)
			}
			got[i] = c
		})
	}
	wg.Wait()
	for i := range got {
		if got[i] != got[0] {
			t.Fatalf("creator %d got other credentials than creator 0", i)
		}
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".credentials-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestDamagedCredentialsErrorHidesContent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s3-credentials.json")
	if err := os.WriteFile(path, []byte(`{"access_key_id":"AKSECRETLOOKING"`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := loadOrCreateCredentials(path)
	if err == nil || strings.Contains(err.Error(), "AKSECRETLOOKING") {
		t.Fatalf("err = %v, want an error that does not quote the file", err)
	}
}
