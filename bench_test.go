package caddyupload

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddyupload/caddyupload/storage"
	"github.com/caddyupload/caddyupload/storage/boltledger"
	"github.com/caddyupload/caddyupload/storage/s3store"
)

// staticAuth authenticates every request as one subject, so that the
// benchmarks measure the route itself (token verification has its own
// benchmark in internal/oidcauth).
type staticAuth struct{ sub string }

func (a staticAuth) authenticate(*http.Request) (identity, *apiError) {
	return identity{Subject: a.sub}, nil
}
func (staticAuth) release()       {}
func (staticAuth) source() string { return "" }

// benchHandler is a provisioned-by-hand handler on a real bbolt ledger and
// the S3 presigner (presigning and the ledger write are the whole create
// route; no request reaches a storage server).
func benchHandler(b *testing.B, groupCommit bool) *Handler {
	b.Helper()
	h := &Handler{Key: "u/{user}/{uuid}{ext}", Types: []string{"image/*"}}
	h.setDefaults()
	if err := provisionForTest(b, h, boltledger.Options{NoGroupCommit: !groupCommit}); err != nil {
		b.Fatal(err)
	}
	return h
}

// provisionForTest sets up h the way Provision does, without a Caddy
// context: a bbolt ledger in a temporary directory, an S3 store that is
// never called (presigning is local), one fixed subject.
func provisionForTest(tb testing.TB, h *Handler, opts ...boltledger.Options) error {
	store, err := s3store.New(context.Background(), s3store.Config{
		Endpoint: "http://127.0.0.1:9", Bucket: "bench", Region: "us-east-1",
		AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", UsePathStyle: true,
	})
	if err != nil {
		return err
	}
	var o boltledger.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	l, err := boltledger.Open(filepath.Join(tb.TempDir(), "ledger.db"), o)
	if err != nil {
		return err
	}
	tb.Cleanup(func() { _ = l.Close() })
	if h.keys, err = parseKeyTemplate(h.Key); err != nil {
		return err
	}
	h.types = newTypeMatcher(h.Types)
	h.store, h.ledger, h.auth, h.logger, h.Name = store, l, staticAuth{"bench-user"}, zap.NewNop(), "bench"
	return nil
}

const benchCreateBody = `{"filename":"holiday photo.jpg","size":2400000,"type":"image/jpeg","metadata":{"album":"summer"}}`

func benchCreate(b *testing.B, groupCommit bool) {
	h := benchHandler(b, groupCommit)
	repl := caddy.NewReplacer()
	// Many requests in flight at once, as under load: what group commit is for.
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("POST", "/", strings.NewReader(benchCreateBody))
			req.Header.Set("Content-Type", "application/json")
			req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl))
			w := httptest.NewRecorder()
			if err := h.ServeHTTP(w, req, nil); err != nil || w.Code != 201 {
				b.Fatalf("%d %v %s", w.Code, err, w.Body)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
}

// BenchmarkCreate is the whole create route in process: JSON, policy, key,
// presign, durable ledger write, JSON answer.
func BenchmarkCreate(b *testing.B) {
	b.Run("group-commit", func(b *testing.B) { benchCreate(b, true) })
	b.Run("commit-per-write", func(b *testing.B) { benchCreate(b, false) })
}

// BenchmarkSignParts signs ten parts of a multipart upload per call.
func BenchmarkSignParts(b *testing.B) {
	h := benchHandler(b, true)
	rec := h.newRecord(identity{Subject: "bench-user"}, upload{filename: "big.bin", size: 10 << 30, mimeType: "application/octet-stream", ext: ".bin"}, storage.KindMultipart)
	rec.Internal.PartSize, rec.Internal.PartCount = partLayout(rec.Size, h.PartSize)
	rec.Internal.UploadID = "bench-upload-id"
	if err := h.ledger.Create(context.Background(), rec); err != nil {
		b.Fatal(err)
	}
	body := `{"numbers":[1,2,3,4,5,6,7,8,9,10]}`
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("POST", "/"+rec.ID+"/parts", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			if err := h.ServeHTTP(w, req, nil); err != nil || w.Code != 200 {
				b.Fatalf("%d %v %s", w.Code, err, w.Body)
			}
		}
	})
}

// BenchmarkKeyTemplate renders a key with a caller-derived value.
func BenchmarkKeyTemplate(b *testing.B) {
	kt, err := parseKeyTemplate("avatars/{user}/{year}/{month}/{uuid}{ext}")
	if err != nil {
		b.Fatal(err)
	}
	v := keyVars{UUID: "0b0e7c9e-8f5d-4c1a-9c39-2b8f0a1d2e3f", Ext: ".jpg", Subject: "alice@example.com", Now: time.Now()}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = kt.render(v)
	}
}
