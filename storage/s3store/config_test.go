package s3store

import (
	"context"
	"strings"
	"testing"

	"github.com/caddyupload/caddyupload/storage"
)

func TestNewValidates(t *testing.T) {
	base := Config{Bucket: "uploads", AccessKeyID: "AKID", SecretAccessKey: "SECRETVALUE"}
	for name, edit := range map[string]func(*Config){
		"no bucket":          func(c *Config) { c.Bucket = "" },
		"bucket upper case":  func(c *Config) { c.Bucket = "Uploads" },
		"bucket too short":   func(c *Config) { c.Bucket = "ab" },
		"key without secret": func(c *Config) { c.SecretAccessKey = "" },
		"endpoint scheme":    func(c *Config) { c.Endpoint = "ftp://host" },
		"endpoint path":      func(c *Config) { c.Endpoint = "https://host/prefix" },
		"endpoint query":     func(c *Config) { c.Endpoint = "https://host?x=1" },
		"endpoint user":      func(c *Config) { c.Endpoint = "https://u:p@host" },
		"public no host":     func(c *Config) { c.PublicEndpoint = "https://" },
	} {
		cfg := base
		edit(&cfg)
		_, err := New(context.Background(), cfg)
		if err == nil {
			t.Errorf("%s: New succeeded", name)
			continue
		}
		if strings.Contains(err.Error(), "SECRETVALUE") {
			t.Errorf("%s: error carries the secret: %v", name, err)
		}
	}
}

func TestIDAndDefaults(t *testing.T) {
	s := newTestStore(t, nil)
	if s.ID() != "s3:127.0.0.1:9000/uploads" || s.region != "us-east-1" || !s.SupportsPost() {
		t.Fatalf("ID %q region %q post %v", s.ID(), s.region, s.SupportsPost())
	}
	aws := newTestStore(t, func(c *Config) { c.Endpoint = ""; c.UsePathStyle = false })
	if aws.ID() != "s3:aws/uploads" {
		t.Fatalf("AWS ID %q", aws.ID())
	}
	r2 := newTestStore(t, func(c *Config) {
		c.Endpoint, c.Region, c.DisablePost = "https://acct.r2.cloudflarestorage.com/", "auto", true
	})
	if r2.ID() != "s3:acct.r2.cloudflarestorage.com/uploads" || r2.SupportsPost() {
		t.Fatalf("R2 ID %q post %v", r2.ID(), r2.SupportsPost())
	}
}

// TestDefaultCredentialChain: without static keys the SDK's chain is used,
// here through the environment.
func TestDefaultCredentialChain(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret-from-env")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	s, err := New(context.Background(), Config{Bucket: "uploads", Region: "eu-central-1"})
	if err != nil {
		t.Fatal(err)
	}
	sr, err := s.PresignGet(context.Background(), storage.GetInput{Key: "k"}, storage.Origin{})
	if err != nil {
		t.Fatal(err)
	}
	if cred := mustQuery(t, sr.URL).Get("X-Amz-Credential"); !strings.HasPrefix(cred, "AKIDFROMENV/") {
		t.Fatalf("credential %q; want the key from the environment", cred)
	}
}
