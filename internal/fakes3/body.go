package fakes3

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"net/http"
	"strings"
)

// maxObjectSize is S3's limit for one PUT and one part.
const maxObjectSize = 5 << 30

// maxXMLBody bounds the XML documents of bucket and multipart requests.
const maxXMLBody = 4 << 20

// readBody reads the whole body of a request that must declare its length
// (S3 refuses chunked uploads without one), at most limit bytes, and checks
// it against the signed payload hash when there is one.
func readBody(r *http.Request, payload string, limit int64) ([]byte, *apiError) {
	if r.ContentLength < 0 {
		return nil, errMissingLength
	}
	if r.ContentLength > limit {
		return nil, errTooLarge
	}
	data := make([]byte, r.ContentLength)
	if _, err := io.ReadFull(r.Body, data); err != nil {
		return nil, errIncomplete
	}
	if payload != "" {
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != payload {
			return nil, errPayloadHash
		}
	}
	return data, nil
}

// crc64NVME is the CRC-64/NVME table (reflected polynomial) S3 uses for
// x-amz-checksum-crc64nvme.
var crc64NVME = crc64.MakeTable(0x9a6c9329ac4bc9b5)

// checksums are the x-amz-checksum-* headers S3 verifies, by algorithm.
var checksums = []struct {
	header string
	sum    func([]byte) []byte
}{
	{"X-Amz-Checksum-Crc32", func(b []byte) []byte { return binary.BigEndian.AppendUint32(nil, crc32.ChecksumIEEE(b)) }},
	{"X-Amz-Checksum-Crc32c", func(b []byte) []byte {
		return binary.BigEndian.AppendUint32(nil, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
	}},
	{"X-Amz-Checksum-Crc64nvme", func(b []byte) []byte { return binary.BigEndian.AppendUint64(nil, crc64.Checksum(b, crc64NVME)) }},
	{"X-Amz-Checksum-Sha1", func(b []byte) []byte { return sumOf(sha1.New(), b) }},
	{"X-Amz-Checksum-Sha256", func(b []byte) []byte { return sumOf(sha256.New(), b) }},
}

func sumOf(h hash.Hash, b []byte) []byte { h.Write(b); return h.Sum(nil) }

// checkDigests verifies Content-MD5 and every x-amz-checksum-* header
// against data, as S3 does whether or not they were signed, and returns the
// SHA-256 to keep (base64) when one was given.
func checkDigests(h http.Header, data []byte) (sha string, e *apiError) {
	if v := h.Get("Content-Md5"); v != "" {
		want, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(want) != md5.Size {
			return "", errorf(http.StatusBadRequest, "InvalidDigest", "The Content-MD5 you specified is not valid.")
		}
		if got := md5.Sum(data); string(got[:]) != string(want) {
			return "", errBadDigest
		}
	}
	for k := range h {
		if !strings.HasPrefix(k, "X-Amz-Checksum-") || k == "X-Amz-Checksum-Mode" || k == "X-Amz-Checksum-Type" || k == "X-Amz-Checksum-Algorithm" {
			continue
		}
		known := false
		for _, c := range checksums {
			if c.header == k {
				known = true
			}
		}
		if !known {
			return "", errorf(http.StatusBadRequest, "InvalidRequest", "Unsupported checksum header %s", k)
		}
	}
	if h.Get("X-Amz-Trailer") != "" {
		return "", errorf(http.StatusNotImplemented, "NotImplemented", "trailing checksums are not implemented by this server")
	}
	for _, c := range checksums {
		v := h.Get(c.header)
		if v == "" {
			continue
		}
		want, err := base64.StdEncoding.DecodeString(v)
		got := c.sum(data)
		if err != nil || len(want) != len(got) {
			return "", errorf(http.StatusBadRequest, "InvalidRequest", "Value for %s header is invalid.", strings.ToLower(c.header))
		}
		if string(want) != string(got) {
			return "", errorf(http.StatusBadRequest, "BadDigest", "The %s you specified did not match the calculated checksum.",
				strings.ToUpper(strings.TrimPrefix(c.header, "X-Amz-Checksum-")))
		}
		if c.header == "X-Amz-Checksum-Sha256" {
			sha = v
		}
	}
	return sha, nil
}

// etagOf is the quoted MD5 hex ETag of a single PUT or part.
func etagOf(data []byte) string {
	sum := md5.Sum(data)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

// drain reads what is left of a small request body so that the client,
// still sending it, gets the answer rather than a reset connection.
func drain(r *http.Request) {
	if r.Body != nil {
		io.Copy(io.Discard, io.LimitReader(r.Body, 8<<20))
	}
}
