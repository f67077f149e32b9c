package realservers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// DexBinEnv names the environment variable holding the Dex binary.
const DexBinEnv = "CADDYUPLOAD_DEX_BIN"

// DexUser is a static user of Dex's local password database. Dex puts
// Email, Name and Groups (with scope "groups") into the ID token.
type DexUser struct {
	Email    string
	Password string
	Name     string   // "name" claim; defaults to the part of Email before '@'
	UserID   string   // encoded into "sub"; defaults to a value derived from Email
	Groups   []string // "groups" claim
}

// DexOptions configures StartDex. The zero value is usable.
type DexOptions struct {
	// Port is the loopback port; 0 picks a free one. A fixed port lets a
	// test start Dex after whatever depends on it.
	Port int
	// IDTokenTTL is the lifetime of ID tokens; 0 keeps Dex's default (24h).
	IDTokenTTL time.Duration
	// Users defaults to DefaultDexUsers.
	Users []DexUser
	// ClientID defaults to "caddyupload".
	ClientID string
}

// DefaultDexUsers are the users a Dex gets when DexOptions.Users is empty.
var DefaultDexUsers = []DexUser{
	{Email: "alice@example.com", Password: "alice-password", Name: "Alice", UserID: "alice", Groups: []string{"uploaders", "staff"}},
	{Email: "bob@example.com", Password: "bob-password", Name: "Bob", UserID: "bob"},
}

// Dex is a running Dex OIDC provider with memory storage.
type Dex struct {
	Issuer       string // http://127.0.0.1:PORT/dex
	ClientID     string
	ClientSecret string
	Port         int
	proc         *Process
}

// StartDex starts Dex, waits until its discovery document is served and
// stops it when the test ends. Failure to start fails the test.
func StartDex(t testing.TB, opts DexOptions) *Dex {
	t.Helper()
	bin := Binary(t, DexBinEnv)
	if opts.Port == 0 {
		opts.Port = FreePort(t)
	}
	if len(opts.Users) == 0 {
		opts.Users = DefaultDexUsers
	}
	if opts.ClientID == "" {
		opts.ClientID = "caddyupload"
	}
	d := &Dex{
		Issuer:       fmt.Sprintf("http://%s/dex", Addr(opts.Port)),
		ClientID:     opts.ClientID,
		ClientSecret: dexRandomHex(t, 16),
		Port:         opts.Port,
	}
	cfg, err := dexConfig(d, opts)
	if err != nil {
		t.Fatalf("dex config: %v", err)
	}
	path := filepath.Join(t.TempDir(), "dex.yaml")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	d.proc = StartT(t, fmt.Sprintf("dex:%d", opts.Port), bin, []string{"serve", path}, nil)
	if err := d.proc.WaitReady(30*time.Second, d.discoveryReady); err != nil {
		t.Fatal(err)
	}
	return d
}

// dexConfig renders the config as JSON, which Dex's YAML loader accepts.
func dexConfig(d *Dex, opts DexOptions) ([]byte, error) {
	type password struct {
		Email    string   `json:"email"`
		Hash     string   `json:"hash"`
		Username string   `json:"username"`
		Name     string   `json:"name"`
		UserID   string   `json:"userID"`
		Groups   []string `json:"groups,omitempty"`
	}
	var passwords []password
	for _, u := range opts.Users {
		// Dex refuses logins against hashes below cost 10 (bcrypt.DefaultCost).
		hash, err := bcrypt.GenerateFromPassword([]byte(u.Password), bcrypt.DefaultCost)
		if err != nil {
			return nil, err
		}
		name := u.Name
		if name == "" {
			name, _, _ = strings.Cut(u.Email, "@")
		}
		id := u.UserID
		if id == "" {
			id = "id-" + strings.NewReplacer("@", "-at-", ".", "-").Replace(u.Email)
		}
		passwords = append(passwords, password{
			Email: u.Email, Hash: string(hash), Username: name, Name: name, UserID: id, Groups: u.Groups,
		})
	}
	expiry := map[string]string{}
	if opts.IDTokenTTL > 0 {
		expiry["idTokens"] = opts.IDTokenTTL.String()
	}
	cfg := map[string]any{
		"issuer":  d.Issuer,
		"storage": map[string]any{"type": "memory"},
		"web":     map[string]any{"http": Addr(opts.Port)},
		"logger":  map[string]any{"level": "warn"},
		"expiry":  expiry,
		"oauth2": map[string]any{
			"passwordConnector":  "local",
			"skipApprovalScreen": true,
			"grantTypes":         []string{"authorization_code", "refresh_token", "password"},
			"responseTypes":      []string{"code"},
		},
		"enablePasswordDB": true,
		"staticClients": []map[string]any{{
			"id":           d.ClientID,
			"secret":       d.ClientSecret,
			"name":         "caddyupload tests",
			"redirectURIs": []string{"http://127.0.0.1/callback"},
		}},
		"staticPasswords": passwords,
	}
	return json.MarshalIndent(cfg, "", "  ")
}

func (d *Dex) discoveryReady(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.Issuer+"/.well-known/openid-configuration", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var doc struct {
		Issuer string `json:"issuer"`
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("discovery: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	if doc.Issuer != d.Issuer {
		return fmt.Errorf("discovery: issuer %q, want %q", doc.Issuer, d.Issuer)
	}
	return nil
}

// Token returns an ID token for the user through the password grant, with
// scopes openid, email, profile and groups. It fails the test on error.
func (d *Dex) Token(t testing.TB, email, password string) string {
	t.Helper()
	tok, err := d.TokenErr(email, password)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TokenErr is Token returning the error instead of failing a test.
func (d *Dex) TokenErr(email, password string) (string, error) {
	form := url.Values{
		"grant_type": {"password"},
		"username":   {email},
		"password":   {password},
		"scope":      {"openid email profile groups"},
	}
	req, err := http.NewRequest(http.MethodPost, d.Issuer+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(d.ClientID), url.QueryEscape(d.ClientSecret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("dex token: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("dex token: %s: %s", resp.Status, body)
	}
	var out struct {
		IDToken string `json:"id_token"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.IDToken == "" {
		return "", fmt.Errorf("dex token: no id_token in response (%v)", err)
	}
	return out.IDToken, nil
}

// Stop stops Dex (also done automatically when the test ends).
func (d *Dex) Stop() { d.proc.Stop(5 * time.Second) }

// Output is what Dex printed so far, for test failure messages.
func (d *Dex) Output() string { return d.proc.Output() }

func dexRandomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
