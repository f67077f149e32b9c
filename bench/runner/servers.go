package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/bcrypt"
)

const (
	bucket      = "bench"
	dexClientID = "caddyupload"
)

// s3Server is versitygw (POSIX backend) on loopback.
type s3Server struct {
	*proc
	endpoint, key, secret string
}

func (s *s3Server) client() *s3.Client {
	return s3.New(s3.Options{
		Region:                     "us-east-1",
		BaseEndpoint:               aws.String(s.endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(s.key, s.secret, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

func startVersityGW(work, bin string) (*s3Server, error) {
	port := freePort()
	data := filepath.Join(work, "s3")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	s := &s3Server{endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), key: "AK" + randomHex(9), secret: randomHex(20)}
	var err error
	s.proc, err = start("versitygw", work, bin,
		[]string{"--port", fmt.Sprintf("127.0.0.1:%d", port), "--health", "/healthz", "posix", data},
		[]string{"ROOT_ACCESS_KEY=" + s.key, "ROOT_SECRET_KEY=" + s.secret})
	if err != nil {
		return nil, err
	}
	c := s.client()
	if err := s.WaitReady(30*time.Second, func(ctx context.Context) error {
		_, err := c.ListBuckets(ctx, &s3.ListBucketsInput{})
		return err
	}); err != nil {
		return s, err
	}
	_, err = c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	return s, err
}

// dex is Dex with one static client and one user in its password database.
type dex struct {
	*proc
	issuer, secret string
}

func startDex(work, bin string) (*dex, error) {
	port := freePort()
	d := &dex{issuer: fmt.Sprintf("http://127.0.0.1:%d/dex", port), secret: randomHex(16)}
	hash, err := bcrypt.GenerateFromPassword([]byte("alice-password"), bcrypt.DefaultCost)
	if err != nil {
		return nil, err
	}
	cfg, _ := json.Marshal(map[string]any{
		"issuer":  d.issuer,
		"storage": map[string]any{"type": "memory"},
		"web":     map[string]any{"http": fmt.Sprintf("127.0.0.1:%d", port)},
		"logger":  map[string]any{"level": "warn"},
		"oauth2": map[string]any{
			"passwordConnector": "local", "skipApprovalScreen": true,
			"grantTypes":    []string{"authorization_code", "refresh_token", "password"},
			"responseTypes": []string{"code"},
		},
		"enablePasswordDB": true,
		"staticClients": []map[string]any{{
			"id": dexClientID, "secret": d.secret, "name": "bench", "redirectURIs": []string{"http://127.0.0.1/callback"},
		}},
		"staticPasswords": []map[string]any{{
			"email": "alice@example.com", "hash": string(hash), "username": "alice", "userID": "alice",
		}},
	})
	path := filepath.Join(work, "dex.yaml") // Dex's YAML loader reads JSON
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		return nil, err
	}
	if d.proc, err = start("dex", work, bin, []string{"serve", path}, nil); err != nil {
		return nil, err
	}
	return d, d.WaitReady(30*time.Second, func(ctx context.Context) error {
		return getOK(ctx, d.issuer+"/.well-known/openid-configuration")
	})
}

// token returns an RS256 ID token for alice through the password grant.
func (d *dex) token() (string, error) {
	form := url.Values{"grant_type": {"password"}, "username": {"alice@example.com"}, "password": {"alice-password"}, "scope": {"openid email profile"}}
	req, _ := http.NewRequest(http.MethodPost, d.issuer+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(dexClientID, d.secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		IDToken string `json:"id_token"`
	}
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &out); err != nil || out.IDToken == "" {
		return "", fmt.Errorf("dex token: %s: %s", resp.Status, body)
	}
	return out.IDToken, nil
}

// issuer is an OpenID provider of the runner's own that mints RS256 tokens
// (2048-bit, like Dex's) cheaply and in bulk: Dex's password grant costs a
// bcrypt comparison per token, far too slow to get thousands of distinct
// tokens. Verification of its tokens costs exactly what Dex's cost.
type issuer struct {
	url string
	key *rsa.PrivateKey
	srv *http.Server
	n   int
	mu  sync.Mutex
}

func startIssuer() (*issuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	is := &issuer{url: "http://" + l.Addr().String(), key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q,"id_token_signing_alg_values_supported":["RS256"]}`, is.url, is.url+"/keys")
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "bench", Algorithm: "RS256", Use: "sig"}}})
	})
	is.srv = &http.Server{Handler: mux}
	go func() { _ = is.srv.Serve(l) }()
	return is, nil
}

// mint returns n distinct tokens, signed on all cores.
func (is *issuer) mint(n, workers int) ([]string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: is.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "bench"))
	if err != nil {
		return nil, err
	}
	is.mu.Lock()
	first := is.n
	is.n += n
	is.mu.Unlock()
	out := make([]string, n)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			now := time.Now()
			for i := w; i < n; i += workers {
				claims, _ := json.Marshal(map[string]any{
					"iss": is.url, "aud": "bench", "sub": "fresh", "jti": fmt.Sprint(first + i),
					"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
				})
				jws, err := signer.Sign(claims)
				if err == nil {
					out[i], err = jws.CompactSerialize()
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return out, <-errs
}

// caddyConf fills the bench Caddyfile.
type caddyConf struct {
	Dir, S3, Dex, Issuer string
	Port, Admin, Naive   int
	Sweeper              bool
}

var caddyfile = template.Must(template.New("Caddyfile").Parse(`{
	admin 127.0.0.1:{{.Admin}}
	auto_https off
	persist_config off
	storage file_system {{.Dir}}/caddy-data
}

(s3) {
	s3 {
		bucket ` + bucket + `
		endpoint {{.S3}}
		access_key_id {env.BENCH_S3_KEY}
		secret_access_key {env.BENCH_S3_SECRET}
	}
	ledger {{.Dir}}/ledger.db
}

http://127.0.0.1:{{.Port}} {
	# The baseline: the cheapest answer this server can give.
	handle /ok/* {
		respond "ok"
	}
	# Create, sign parts, /s3/params; the bytes never cross Caddy.
	handle_path /up/* {
		upload {
			name bench
			import s3
			oidc {
				issuer {{.Dex}}
				audience ` + dexClientID + `
			}
			max_size 2GiB
			key bench/{user}/{uuid}{ext}
			sweeper off
		}
	}
	# The same with single PUTs up to 5 GiB, for the big upload.
	handle_path /single/* {
		upload {
			name single
			import s3
			oidc {
				issuer {{.Dex}}
				audience ` + dexClientID + `
			}
			max_size 2GiB
			multipart_threshold 5GiB
			key single/{uuid}{ext}
			sweeper off
		}
	}
	# The same route for tokens that are each used once.
	handle_path /fresh/* {
		upload {
			name fresh
			import s3
			oidc {
				issuer {{.Issuer}}
				audience bench
			}
			key fresh/{user}/{uuid}{ext}
			sweeper off
		}
	}
	# Abandoned uploads for the sweeper.
	handle_path /sweep/* {
		upload {
			name sweep
			import s3
			oidc {
				issuer {{.Dex}}
				audience ` + dexClientID + `
			}
			key sweep/{uuid}{ext}
			url_ttl 5s
			pending_ttl 5s
			sweep_interval 1s
			sweeper {{if .Sweeper}}on{{else}}off{{end}}
		}
	}
	# The naive path: the whole file through the proxy to an application.
	handle /naive/* {
		reverse_proxy 127.0.0.1:{{.Naive}}
	}
}
`))

func (c caddyConf) render() []byte {
	var b bytes.Buffer
	if err := caddyfile.Execute(&b, c); err != nil {
		panic(err)
	}
	return b.Bytes()
}

type caddy struct {
	*proc
	conf caddyConf
	base string // http://127.0.0.1:port
}

func startCaddy(work, bin string, conf caddyConf, s *s3Server) (*caddy, error) {
	path := filepath.Join(work, "Caddyfile")
	if err := os.WriteFile(path, conf.render(), 0o600); err != nil {
		return nil, err
	}
	c := &caddy{conf: conf, base: fmt.Sprintf("http://127.0.0.1:%d", conf.Port)}
	var err error
	c.proc, err = start("caddy", work, bin, []string{"run", "--config", path, "--adapter", "caddyfile"}, []string{
		"BENCH_S3_KEY=" + s.key, "BENCH_S3_SECRET=" + s.secret,
		"XDG_DATA_HOME=" + filepath.Join(work, "xdg-data"), "XDG_CONFIG_HOME=" + filepath.Join(work, "xdg-config"),
	})
	if err != nil {
		return nil, err
	}
	return c, c.WaitReady(30*time.Second, func(ctx context.Context) error { return getOK(ctx, c.base+"/ok/") })
}

// reload loads conf through the admin API, as `caddy reload` does.
func (c *caddy) reload(conf caddyConf) error {
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/load", conf.Admin), bytes.NewReader(conf.render()))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("reload: %s: %s", resp.Status, b)
	}
	c.conf = conf
	return nil
}

func getOK(ctx context.Context, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
