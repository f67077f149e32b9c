package oidcauth

import (
	"testing"
	"time"
)

func TestConfigValidation(t *testing.T) {
	good := Config{Issuer: "https://id.example.com", Audiences: []string{"app"}}
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"defaults", func(*Config) {}, true},
		{"no issuer", func(c *Config) { c.Issuer = "" }, false},
		{"relative issuer", func(c *Config) { c.Issuer = "id.example.com" }, false},
		{"ftp issuer", func(c *Config) { c.Issuer = "ftp://id.example.com" }, false},
		{"bad discovery URL", func(c *Config) { c.DiscoveryURL = "/x" }, false},
		{"no audience", func(c *Config) { c.Audiences = nil }, false},
		{"empty audience", func(c *Config) { c.Audiences = []string{""} }, false},
		{"alg none", func(c *Config) { c.Algorithms = []string{"RS256", "none"} }, false},
		{"alg HS256", func(c *Config) { c.Algorithms = []string{"HS256"} }, false},
		{"alg unknown", func(c *Config) { c.Algorithms = []string{"rs256"} }, false},
		{"alg ES256", func(c *Config) { c.Algorithms = []string{"ES256"} }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mod(&c)
			_, err := New(t.Context(), c, nil)
			if (err == nil) != tt.ok {
				t.Fatalf("New err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := Config{Issuer: "https://id.example.com/", Audiences: []string{"app"}}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	if c.DiscoveryURL != "https://id.example.com/.well-known/openid-configuration" {
		t.Errorf("DiscoveryURL = %q", c.DiscoveryURL)
	}
	if c.Leeway != DefaultLeeway || c.SubjectClaim != "sub" || c.CacheSize != DefaultCacheSize || c.HTTPClient == nil {
		t.Errorf("defaults not applied: %+v", c)
	}
	if len(c.Algorithms) != len(DefaultAlgorithms) {
		t.Errorf("Algorithms = %v", c.Algorithms)
	}
	c, _ = Config{Issuer: "https://id.example.com", Audiences: []string{"app"}, Leeway: -time.Second}.normalize()
	if c.Leeway != 0 {
		t.Errorf("negative leeway = %v, want none", c.Leeway)
	}
}
