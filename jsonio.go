package caddyupload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sync"
)

// jsonBufs hold request and answer bodies while they are read or written:
// every API call has one of each, and reusing them keeps the garbage
// collector out of the request path.
var jsonBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBuffer keeps a rare large body from pinning its memory in the pool.
const maxPooledBuffer = 16 << 10

func getBuffer() *bytes.Buffer { return jsonBufs.Get().(*bytes.Buffer) }

func putBuffer(b *bytes.Buffer) {
	if b.Cap() > maxPooledBuffer {
		return
	}
	b.Reset()
	jsonBufs.Put(b)
}

// decodeBody reads a JSON request body of at most 64 KiB into v. Only
// application/json is read, which no HTML form can send. A larger body is
// refused after 64 KiB and one byte; net/http then drains a little more of
// it so that the client reads the 413 rather than a reset connection.
func decodeBody(r *http.Request, v any) *apiError {
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return errUnsupportedType("the request body must be application/json")
		}
	}
	buf := getBuffer()
	defer putBuffer(buf)
	_, err := buf.ReadFrom(io.LimitReader(r.Body, maxRequestBody+1))
	switch {
	case err != nil:
		return errInvalid("the request body could not be read")
	case buf.Len() > maxRequestBody:
		return errTooLarge("the request body is larger than 64 KiB")
	}
	data := bytes.TrimSpace(buf.Bytes())
	if len(data) == 0 {
		return errInvalid("a JSON body is required")
	}
	// Unmarshal copies every string out of buf, so buf can be reused; it
	// refuses anything after the value.
	if err := json.Unmarshal(data, v); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return errInvalid(fmt.Sprintf("field %q has the wrong type", ute.Field))
		}
		return errInvalid("malformed JSON body")
	}
	return nil
}

// jsonAppender is an answer that writes its own JSON, byte for byte what
// encoding/json would: the answers sent most often skip reflection.
type jsonAppender interface {
	appendJSON(b []byte) []byte
}

// writeJSON answers with v as JSON, in one write.
func writeJSON(w http.ResponseWriter, status int, v any) {
	buf := getBuffer()
	defer putBuffer(buf)
	if a, ok := v.(jsonAppender); ok {
		buf.Write(a.appendJSON(buf.AvailableBuffer()))
	} else {
		enc := json.NewEncoder(buf)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(v)
	}
	// One allocation for the three values; each slice is capped, so an
	// Add by a later handler copies rather than writes into a neighbour.
	vals := [...]string{"application/json; charset=utf-8", "no-store", "nosniff"}
	hv := vals[:]
	h := w.Header()
	h["Content-Type"] = hv[0:1:1]
	h["Cache-Control"] = hv[1:2:2]
	h["X-Content-Type-Options"] = hv[2:3:3]
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
