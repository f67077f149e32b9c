package embedded

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// storedCredentials is the file that keeps generated credentials across
// restarts, so objects stay reachable with the same keys.
type storedCredentials struct {
	AccessKeyID     string `json:"access_key_id"`
	SecretAccessKey string `json:"secret_access_key"`
}

// credentialsPath is beside the data dir, not in it: everything in the data
// dir is a bucket.
func credentialsPath(dataDir string) string {
	return filepath.Join(filepath.Dir(dataDir), filepath.Base(dataDir)+"-credentials.json")
}

// loadOrCreateCredentials reads the file, or generates credentials and
// writes them with mode 0600. The file appears complete or not at all, and
// of two processes creating it at once, both end up with the first one's.
func loadOrCreateCredentials(path string) (storedCredentials, error) {
	c, err := readCredentials(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return c, err
	}
	// rand.Text is 26 base32 characters (130 random bits).
	c = storedCredentials{AccessKeyID: "CU" + rand.Text()[:18], SecretAccessKey: rand.Text() + rand.Text()}
	data, _ := json.Marshal(c)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return c, fmt.Errorf("credentials: %v", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".credentials-*")
	if err != nil {
		return c, fmt.Errorf("credentials: %v", err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file 0600.
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return c, fmt.Errorf("credentials: %v", err)
	}
	// Link, unlike rename, fails when the file already exists.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readCredentials(path)
		}
		return c, fmt.Errorf("credentials: %v", err)
	}
	return c, nil
}

func readCredentials(path string) (storedCredentials, error) {
	var c storedCredentials
	data, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	// The error names the file, never its content.
	if err := json.Unmarshal(data, &c); err != nil || c.AccessKeyID == "" || c.SecretAccessKey == "" {
		return c, fmt.Errorf("credentials file %s is damaged; delete it to generate new credentials (objects stay)", path)
	}
	return c, nil
}
