package storagetest

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// minPart is the smallest part S3 accepts before the last one.
const minPart = 5 << 20

func createMultipart(t *testing.T, s storage.ObjectStore, key, typ string) string {
	t.Helper()
	id, err := s.CreateMultipart(ctxT(t), key, typ)
	if err != nil || id == "" {
		t.Fatalf("CreateMultipart: %q, %v", id, err)
	}
	return id
}

func presignPart(t *testing.T, s storage.ObjectStore, key, id string, n int32, size int64) storage.SignedRequest {
	t.Helper()
	sr, err := s.PresignPart(ctxT(t), storage.PartInput{Key: key, UploadID: id, Number: n, Size: size, TTL: time.Minute}, storage.Origin{})
	if err != nil {
		t.Fatalf("PresignPart %d: %v", n, err)
	}
	return sr
}

// uploadPart sends body as part n signed with its exact length and returns
// the ETag (unquoted) the server answered with.
func uploadPart(t *testing.T, s storage.ObjectStore, key, id string, n int32, body []byte) string {
	t.Helper()
	sr := presignPart(t, s, key, id, n, int64(len(body)))
	if sr.Headers["Content-Length"] != strconv.Itoa(len(body)) {
		t.Fatalf("part %d headers %v; want Content-Length %d", n, sr.Headers, len(body))
	}
	resp := send(t, sr, body, nil)
	etag := strings.Trim(resp.header.Get("ETag"), `"`)
	if !resp.ok() || etag == "" {
		t.Fatalf("PUT part %d: %s (ETag %q)", n, resp, etag)
	}
	return etag
}

func abort(t *testing.T, s storage.ObjectStore, key, id string) {
	t.Helper()
	if err := s.AbortMultipart(ctxT(t), key, id); err != nil {
		t.Fatalf("AbortMultipart: %v", err)
	}
}

func testMultipartComplete(t *testing.T, s storage.ObjectStore, p string) {
	key := p + "big.zip"
	id := createMultipart(t, s, key, "application/zip")
	sizes := []int{minPart, 1234}
	var want []storage.Part
	for i, n := range sizes {
		num := int32(i + 1)
		want = append(want, storage.Part{Number: num, ETag: uploadPart(t, s, key, id, num, randomBytes(t, n)), Size: int64(n)})
	}
	got, err := s.ListParts(ctxT(t), key, id)
	if err != nil {
		t.Fatalf("ListParts: %v", err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ListParts = %+v; want %+v", got, want)
	}
	if err := s.CompleteMultipart(ctxT(t), key, id, got); err != nil {
		t.Fatalf("CompleteMultipart: %v", err)
	}
	info, err := s.Head(ctxT(t), key)
	if err != nil || info.Size != minPart+1234 || info.ContentType != "application/zip" {
		t.Fatalf("Head after complete = size %d type %q, %v; want %d application/zip", info.Size, info.ContentType, err, minPart+1234)
	}
	ups, err := s.ListMultipartUploads(ctxT(t), p)
	if err != nil || len(ups) != 0 {
		t.Fatalf("ListMultipartUploads after complete = %+v, %v; want none", ups, err)
	}
}

func testMultipartWrongETag(t *testing.T, s storage.ObjectStore, p string) {
	key := p + "wrong-etag.bin"
	id := createMultipart(t, s, key, "application/octet-stream")
	defer abort(t, s, key, id)
	etag := uploadPart(t, s, key, id, 1, randomBytes(t, 1000))
	sum := md5.Sum([]byte("not the part"))
	wrong := hex.EncodeToString(sum[:])
	if wrong == etag {
		t.Fatal("wrong ETag equals the real one")
	}
	err := s.CompleteMultipart(ctxT(t), key, id, []storage.Part{{Number: 1, ETag: wrong}})
	if !errors.Is(err, storage.ErrInvalidPart) {
		t.Fatalf("CompleteMultipart with a wrong ETag: %v; want ErrInvalidPart", err)
	}
	err = s.CompleteMultipart(ctxT(t), key, id, []storage.Part{{Number: 1, ETag: etag}, {Number: 2, ETag: etag}})
	if !errors.Is(err, storage.ErrInvalidPart) {
		t.Fatalf("CompleteMultipart naming a part never uploaded: %v; want ErrInvalidPart", err)
	}
	mustBeAbsent(t, s, key)
}

func testMultipartWrongPartSize(t *testing.T, s storage.ObjectStore, p string) {
	key := p + "wrong-size.bin"
	id := createMultipart(t, s, key, "application/octet-stream")
	defer abort(t, s, key, id)
	sr := presignPart(t, s, key, id, 1, 4096)
	for _, n := range []int{4095, 4097} {
		if resp := send(t, sr, randomBytes(t, n), nil); !resp.refused() {
			t.Fatalf("part of %d bytes signed for 4096: %s; want 4xx", n, resp)
		}
	}
	parts, err := s.ListParts(ctxT(t), key, id)
	if err != nil || len(parts) != 0 {
		t.Fatalf("ListParts after refused parts = %+v, %v; want none", parts, err)
	}
}

// testMultipartUnsignedPartSize: Size 0 leaves the length to the client
// (Uppy picks its own part size); the stored size is what ListParts says.
func testMultipartUnsignedPartSize(t *testing.T, s storage.ObjectStore, p string) {
	key := p + "unsigned.bin"
	id := createMultipart(t, s, key, "application/octet-stream")
	defer abort(t, s, key, id)
	sr := presignPart(t, s, key, id, 3, 0)
	if _, ok := sr.Headers["Content-Length"]; ok {
		t.Fatalf("unsigned part headers %v carry Content-Length", sr.Headers)
	}
	if resp := send(t, sr, randomBytes(t, 777), nil); !resp.ok() {
		t.Fatalf("part of a free length: %s", resp)
	}
	parts, err := s.ListParts(ctxT(t), key, id)
	if err != nil || len(parts) != 1 || parts[0].Number != 3 || parts[0].Size != 777 {
		t.Fatalf("ListParts = %+v, %v; want part 3 of 777 bytes", parts, err)
	}
}

func testMultipartAbort(t *testing.T, s storage.ObjectStore, p string) {
	key := p + "abort.bin"
	id := createMultipart(t, s, key, "application/octet-stream")
	uploadPart(t, s, key, id, 1, randomBytes(t, 100))
	abort(t, s, key, id)
	if parts, err := s.ListParts(ctxT(t), key, id); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("ListParts after abort = %+v, %v; want ErrNotFound", parts, err)
	}
	abort(t, s, key, id) // already gone: still a success
	if err := s.CompleteMultipart(ctxT(t), key, id, []storage.Part{{Number: 1, ETag: "0123"}}); err == nil {
		t.Fatal("CompleteMultipart of an aborted upload succeeded")
	}
	mustBeAbsent(t, s, key)
}

func testMultipartListUploads(t *testing.T, s storage.ObjectStore, p string) {
	inKey, outKey := p+"in/a.bin", p+"out/b.bin"
	inID := createMultipart(t, s, inKey, "application/octet-stream")
	defer abort(t, s, inKey, inID)
	outID := createMultipart(t, s, outKey, "application/octet-stream")
	defer abort(t, s, outKey, outID)

	ups, err := s.ListMultipartUploads(ctxT(t), p+"in/")
	if err != nil {
		t.Fatalf("ListMultipartUploads: %v", err)
	}
	if len(ups) != 1 || ups[0].Key != inKey || ups[0].UploadID != inID {
		t.Fatalf("ListMultipartUploads(%q) = %+v; want only %s", p+"in/", ups, inKey)
	}
	if ups[0].Initiated.IsZero() || time.Since(ups[0].Initiated) > time.Hour {
		t.Fatalf("upload initiated at %s; want about now", ups[0].Initiated)
	}
	all, err := s.ListMultipartUploads(ctxT(t), p)
	if err != nil || len(all) != 2 {
		t.Fatalf("ListMultipartUploads(%q) = %+v, %v; want both uploads", p, all, err)
	}
}
