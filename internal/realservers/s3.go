package realservers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3Server is an S3-compatible server running as a process on loopback,
// with one root identity and path-style addressing.
type S3Server struct {
	Name      string
	Endpoint  string // http://127.0.0.1:PORT
	Region    string
	AccessKey string
	SecretKey string
	Process   *Process

	dir string // data directory, removed by StopShared for shared servers
}

// Client is an SDK client for the server with the options every
// S3-compatible server here needs (path style, no default CRC trailers).
func (s *S3Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:                     s.Region,
		BaseEndpoint:               aws.String(s.Endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// NewBucket creates a bucket with a fresh random name and returns it.
func (s *S3Server) NewBucket(t testing.TB) string {
	t.Helper()
	name := "cu-" + s3RandomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatalf("%s: create bucket %s: %v", s.Name, name, err)
	}
	return name
}

// StartVersityGW starts versitygw (posix backend) for t and stops it when t
// ends.
func StartVersityGW(t testing.TB) *S3Server {
	t.Helper()
	bin := Binary(t, "CADDYUPLOAD_VERSITYGW_BIN")
	srv, err := startVersityGW(bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Stop(5 * time.Second) })
	return srv
}

// StartSeaweedFS starts `weed mini` (master, volume, filer and S3 gateway in
// one process) for t and stops it when t ends. It takes several seconds.
func StartSeaweedFS(t testing.TB) *S3Server {
	t.Helper()
	bin := Binary(t, "CADDYUPLOAD_WEED_BIN")
	srv, err := startSeaweedFS(bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Stop(10 * time.Second) })
	return srv
}

func startVersityGW(bin, dir string) (*S3Server, error) {
	port, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	srv := newS3Server("versitygw", port[0], dir)
	args := []string{"--port", Addr(port[0]), "--health", "/healthz", "posix", data}
	env := []string{"ROOT_ACCESS_KEY=" + srv.AccessKey, "ROOT_SECRET_KEY=" + srv.SecretKey}
	if srv.Process, err = Start(srv.Name, bin, args, env); err != nil {
		return nil, err
	}
	if err := srv.Process.WaitReady(30*time.Second, srv.listBuckets); err != nil {
		srv.Process.Kill()
		return nil, err
	}
	return srv, nil
}

func startSeaweedFS(bin, dir string) (*S3Server, error) {
	// master, volume, filer, s3 and their gRPC ports: all chosen here so
	// that parallel servers never meet on the defaults (port+10000).
	p, err := freePorts(8)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	srv := newS3Server("seaweedfs", p[3], dir)
	ident := fmt.Sprintf(`{"identities":[{"name":"root","credentials":[{"accessKey":%q,"secretKey":%q}],"actions":["Admin","Read","List","Tagging","Write"]}]}`,
		srv.AccessKey, srv.SecretKey)
	conf := filepath.Join(dir, "s3.json")
	if err := os.WriteFile(conf, []byte(ident), 0o600); err != nil {
		return nil, err
	}
	args := []string{"mini",
		"-dir=" + data, "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-master.port=" + strconv.Itoa(p[0]), "-master.port.grpc=" + strconv.Itoa(p[4]),
		"-volume.port=" + strconv.Itoa(p[1]), "-volume.port.grpc=" + strconv.Itoa(p[5]),
		"-filer.port=" + strconv.Itoa(p[2]), "-filer.port.grpc=" + strconv.Itoa(p[6]),
		"-s3.port=" + strconv.Itoa(p[3]), "-s3.port.grpc=" + strconv.Itoa(p[7]),
		"-s3.port.iceberg=0", "-s3.port.lance=0",
		"-webdav=false", "-admin.ui=false",
		"-master.telemetry=false", // otherwise it reports to the internet
		// Without this a bucket with no CORS rules allows every origin,
		// unlike AWS; tests of bucket CORS need the AWS behaviour.
		"-s3.allowedOrigins=http://no-cors-configured.invalid",
		"-s3.config=" + conf,
	}
	if srv.Process, err = Start(srv.Name, bin, args, nil); err != nil {
		return nil, err
	}
	// /healthz answers before writes work: wait for a real signed write.
	if err := srv.Process.WaitReady(90*time.Second, srv.probeWrite); err != nil {
		srv.Process.Kill()
		return nil, err
	}
	return srv, nil
}

func newS3Server(name string, port int, dir string) *S3Server {
	return &S3Server{
		Name:      name,
		Endpoint:  "http://" + Addr(port),
		Region:    "us-east-1",
		AccessKey: "AK" + strings.ToUpper(s3RandomHex(9)),
		SecretKey: s3RandomHex(20),
		dir:       dir,
	}
}

func (s *S3Server) listBuckets(ctx context.Context) error {
	_, err := s.Client().ListBuckets(ctx, &s3.ListBucketsInput{})
	return err
}

// probeWrite creates a bucket (once) and writes an object to it.
func (s *S3Server) probeWrite(ctx context.Context) error {
	c := s.Client()
	bucket := "ready-probe"
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &bucket}); err != nil {
		if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
			return err
		}
	}
	_, err := c.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &bucket, Key: aws.String("probe"),
		Body: strings.NewReader("ok"), ContentLength: aws.Int64(2),
	})
	return err
}

// Shared servers: one per kind per test binary, started on first use, so
// that a package's tests do not pay the start-up each time. The package's
// TestMain calls StopShared after m.Run; should it not, Pdeathsig ends the
// processes with the test binary.
var shared struct {
	mu   sync.Mutex
	srv  map[string]*S3Server
	errs map[string]error
}

// SharedVersityGW is a versitygw shared by the tests of the binary.
func SharedVersityGW(t testing.TB) *S3Server {
	t.Helper()
	bin := Binary(t, "CADDYUPLOAD_VERSITYGW_BIN")
	return sharedServer(t, "versitygw", func(dir string) (*S3Server, error) { return startVersityGW(bin, dir) })
}

// SharedSeaweedFS is a SeaweedFS shared by the tests of the binary.
func SharedSeaweedFS(t testing.TB) *S3Server {
	t.Helper()
	bin := Binary(t, "CADDYUPLOAD_WEED_BIN")
	return sharedServer(t, "seaweedfs", func(dir string) (*S3Server, error) { return startSeaweedFS(bin, dir) })
}

func sharedServer(t testing.TB, kind string, start func(dir string) (*S3Server, error)) *S3Server {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if srv := shared.srv[kind]; srv != nil {
		if srv.Process.Exited() {
			t.Fatalf("shared %s exited:\n%s", kind, srv.Process.Output())
		}
		return srv
	}
	if err := shared.errs[kind]; err != nil {
		t.Fatalf("shared %s: %v", kind, err) // failed once: fail every user, fast
	}
	if shared.srv == nil {
		shared.srv, shared.errs = map[string]*S3Server{}, map[string]error{}
	}
	dir, err := os.MkdirTemp("", "caddyupload-"+kind+"-")
	if err == nil {
		var srv *S3Server
		if srv, err = start(dir); err == nil {
			shared.srv[kind] = srv
			return srv
		}
		_ = os.RemoveAll(dir)
	}
	shared.errs[kind] = err
	t.Fatalf("shared %s: %v", kind, err)
	return nil
}

// StopShared stops the shared servers and removes their data.
func StopShared() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	for kind, srv := range shared.srv {
		srv.Process.Stop(10 * time.Second)
		_ = os.RemoveAll(srv.dir)
		delete(shared.srv, kind)
	}
}

// freePorts returns n distinct loopback ports, held open together while
// they are chosen so that none is returned twice.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func s3RandomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
