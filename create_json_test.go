package caddyupload

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// TestSignPartsResponseJSON: the same for the answer of part signing.
func TestSignPartsResponseJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for range 1000 {
		var r signPartsResponse
		if rng.IntN(4) > 0 {
			r.Parts = []signedPart{}
		}
		for i := range rng.IntN(12) {
			p := signedPart{Number: rng.Int32() - 1<<30, URL: randomJSONString(rng)}
			if i%2 == 0 {
				p.Headers = map[string]string{randomJSONString(rng): randomJSONString(rng), "Content-Length": "5"}
			}
			r.Parts = append(r.Parts, p)
		}
		r.ExpiresAt = time.Unix(rng.Int64N(1<<35), rng.Int64N(1e9)).UTC()
		if got, want := r.appendJSON(nil), encoderJSON(t, r); !bytes.Equal(got, want) {
			t.Fatalf("appendJSON:\n got %s\nwant %s", got, want)
		}
	}
}

func encoderJSON(t *testing.T, v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// randomJSONString mixes what needs escaping with what does not.
func randomJSONString(rng *rand.Rand) string {
	chars := []rune("aZ9/?&=%<>\"\\\x00\x1f\u2028é🙂 ")
	out := make([]rune, rng.IntN(30))
	for i := range out {
		out[i] = chars[rng.IntN(len(chars))]
	}
	s := string(out)
	if rng.IntN(10) == 0 {
		s += "\xff" // invalid UTF-8
	}
	return s
}

// TestCreateResponseJSON: the create answer written without reflection is
// byte for byte what encoding/json writes for it (as writeJSON would).
func TestCreateResponseJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	str := func() string { return randomJSONString(rng) }
	strMap := func() map[string]string {
		switch rng.IntN(3) {
		case 0:
			return nil
		case 1:
			return map[string]string{}
		}
		m := map[string]string{}
		for range 1 + rng.IntN(12) {
			m[str()] = str()
		}
		return m
	}
	for range 2000 {
		r := createResponse{
			ID: str(), Key: str(), Status: storage.Status(str()), Method: str(), URL: str(),
			Headers: strMap(), Fields: strMap(),
			ExpiresAt: time.Unix(rng.Int64N(1<<35), rng.Int64N(1e9)).In(time.FixedZone("", 60*(rng.IntN(1440)-720))),
		}
		if rng.IntN(2) == 0 {
			r.Multipart = &multipartInfo{PartSize: rng.Int64(), PartCount: rng.Int32()}
		}
		if rng.IntN(5) == 0 {
			r.ExpiresAt = time.Time{}
		}
		if got, want := r.appendJSON(nil), encoderJSON(t, r); !bytes.Equal(got, want) {
			t.Fatalf("appendJSON:\n got %s\nwant %s", got, want)
		}
	}
}
