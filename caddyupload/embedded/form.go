package embedded

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"time"
)

// A browser form upload (S3 POST policy) carries its credentials in form
// fields, before the file. The server reads every field before it checks
// anything — and the HTTP library under it parses any multipart body of
// known length into memory first — so an unsigned form must never reach
// it. The handler reads the fields itself, as a stream and within fixed
// bounds, verifies the policy's signature and expiration with the
// credentials the upload handler signs with, and only then passes the
// request on: the bytes already read, then the rest of the body, unchanged.
const (
	// maxFormHead bounds the form before the file's content: the fields
	// (a policy is a few KB) and every part's headers.
	maxFormHead = 64 << 10
	// maxFormLine bounds one line of it.
	maxFormLine = 16 << 10
	// maxVerifying bounds the forms being read and verified at once;
	// beyond it a form is answered 503 at once. Each holds at most about
	// maxFormHead + maxFormLine bytes.
	maxVerifying = 64
	// fileTrailer is "\r\n--" + boundary + "--\r\n" less the boundary.
	fileTrailer = 8
)

// formReadTimeout bounds the time a client may take to send the form
// before the file's content, so slow clients cannot hold the verification
// slots; tests shorten it.
var formReadTimeout = 15 * time.Second

// formError is a refused form: the status and upload API error to answer.
type formError struct {
	status        int
	code, message string
}

func (e *formError) Error() string { return e.message }

func formDenied(msg string) *formError {
	return &formError{http.StatusForbidden, "forbidden", msg}
}

func formInvalid(msg string) *formError {
	return &formError{http.StatusBadRequest, "invalid_request", msg}
}

var errFormTooLarge = &formError{http.StatusRequestEntityTooLarge, "too_large",
	"the form fields before the file are too large"}

// formHead is what precedes the file's content.
type formHead struct {
	fields map[string]string
	// size is the number of body bytes before the file's content.
	size int64
}

// formBoundary returns the boundary of a form upload's single
// Content-Type, restricted to the characters RFC 2046 allows and
// browsers use, so every parser after this one reads the same boundary.
func formBoundary(h http.Header) (string, *formError) {
	types := h.Values("Content-Type")
	if len(types) != 1 {
		return "", formInvalid("a form upload has one Content-Type")
	}
	mt, params, err := mime.ParseMediaType(types[0])
	if err != nil || mt != "multipart/form-data" {
		return "", formInvalid("a form upload is multipart/form-data")
	}
	b := params["boundary"]
	if b == "" || len(b) > 70 || strings.Trim(b, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'()+_,-./:=?") != "" {
		return "", formInvalid("the form's multipart boundary is missing or malformed")
	}
	return b, nil
}

// recordingReader keeps every byte read through it.
type recordingReader struct {
	r   io.Reader
	buf bytes.Buffer
}

func (rr *recordingReader) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	rr.buf.Write(p[:n])
	return n, err
}

// readFormHead reads the parts before the file with the server's rules —
// lines end in CRLF, boundary lines match exactly, names are case-
// insensitive, the file is the part named "file" or with a filename — so
// that both read the same fields. Anything the server would read
// differently is refused, and so is a repeated field: the server keeps the
// last value.
func readFormHead(br *bufio.Reader, boundary string) (formHead, *formError) {
	head := formHead{fields: make(map[string]string)}
	readLine := func() ([]byte, *formError) {
		line, err := br.ReadSlice('\n')
		head.size += int64(len(line))
		switch {
		case errors.Is(err, bufio.ErrBufferFull), head.size > maxFormHead:
			return nil, errFormTooLarge
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil, &formError{http.StatusRequestTimeout, "invalid_request", "the form's fields came too slowly"}
		case err != nil:
			return nil, formInvalid("the form ends before the file")
		case !bytes.HasSuffix(line, []byte("\r\n")):
			return nil, formInvalid("malformed form: a line does not end in CRLF")
		}
		return line, nil
	}
	delim, last := "--"+boundary+"\r\n", "--"+boundary+"--\r\n"

	line, ferr := readLine()
	if ferr != nil {
		return head, ferr
	}
	if string(line) != delim {
		return head, formInvalid("malformed form: it does not start with its boundary")
	}
	var value bytes.Buffer
	for {
		hdr := make(textproto.MIMEHeader)
		for {
			line, ferr := readLine()
			if ferr != nil {
				return head, ferr
			}
			if len(line) == 2 {
				break
			}
			k, v, ok := strings.Cut(string(line[:len(line)-2]), ":")
			if !ok {
				return head, formInvalid("malformed form: a part header has no colon")
			}
			k = textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(k))
			if hdr.Get(k) != "" {
				return head, formInvalid("malformed form: a part header is repeated")
			}
			hdr.Set(k, strings.TrimSpace(v))
		}
		disp, params, err := mime.ParseMediaType(hdr.Get("Content-Disposition"))
		if err != nil || disp != "form-data" || params["name"] == "" {
			return head, formInvalid("malformed form: a part has no form-data name")
		}
		name := strings.ToLower(params["name"])
		if _, named := params["filename"]; named || name == "file" {
			return head, nil
		}
		value.Reset()
		for {
			line, ferr := readLine()
			if ferr != nil {
				return head, ferr
			}
			s := string(line)
			if s == last {
				return head, formInvalid("the form has no file")
			}
			if s == delim {
				break
			}
			value.Write(line)
		}
		if _, dup := head.fields[name]; dup {
			return head, formInvalid("the form repeats the field " + name)
		}
		head.fields[name] = strings.TrimSuffix(value.String(), "\r\n")
	}
}

// postPolicy is the part of a POST policy document checked here.
type postPolicy struct {
	Expiration string            `json:"expiration"`
	Conditions []json.RawMessage `json:"conditions"`
}

// verifyForm checks the form's signature and policy, and that the file,
// as the request's Content-Length makes it, fits the signed size range,
// so the server never reads more than the policy allows. The server checks
// all of it again, and the rest of the policy.
func (h *Handler) verifyForm(head formHead, contentLength int64, boundary string) *formError {
	f := head.fields
	for _, name := range []string{"policy", "x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature"} {
		if f[name] == "" {
			return formDenied("the storage path accepts signed upload forms only")
		}
	}
	if err := h.signer.checkPolicySignature(f["x-amz-algorithm"], f["x-amz-credential"], f["policy"], f["x-amz-signature"]); err != nil {
		return formDenied(err.Error())
	}
	doc, err := base64.StdEncoding.DecodeString(f["policy"])
	var p postPolicy
	if err == nil {
		err = json.Unmarshal(doc, &p)
	}
	if err != nil {
		return formInvalid("malformed policy")
	}
	exp, err := time.Parse(time.RFC3339, p.Expiration)
	if err != nil {
		return formInvalid("malformed policy expiration")
	}
	if !now().Before(exp) {
		return formDenied("the upload form has expired")
	}
	fileSize := contentLength - head.size - int64(len(boundary)) - fileTrailer
	if fileSize < 0 {
		return formInvalid("the form is shorter than its Content-Length says")
	}
	for _, raw := range p.Conditions {
		var cond []any
		if json.Unmarshal(raw, &cond) != nil || len(cond) != 3 || cond[0] != "content-length-range" {
			continue
		}
		if max, ok := cond[2].(float64); ok && float64(fileSize) > max {
			return &formError{http.StatusRequestEntityTooLarge, "too_large", "the file is larger than the form allows"}
		}
	}
	return nil
}

// serveForm verifies a form upload and passes it to the server.
func (h *Handler) serveForm(w http.ResponseWriter, r *http.Request) {
	select {
	case h.verifying <- struct{}{}:
	default:
		w.Header().Set("Retry-After", "1")
		h.refuseForm(w, &formError{http.StatusServiceUnavailable, "storage_unavailable", "too many uploads are starting at once; retry"})
		return
	}
	release := sync.OnceFunc(func() { <-h.verifying })
	defer release()

	boundary, ferr := formBoundary(r.Header)
	if ferr != nil {
		h.refuseForm(w, ferr)
		return
	}
	if r.ContentLength <= 0 {
		// The server needs the length to find the end of the file.
		h.refuseForm(w, &formError{http.StatusLengthRequired, "invalid_request", "a form upload needs a Content-Length"})
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(formReadTimeout))
	rec := &recordingReader{r: r.Body}
	head, ferr := readFormHead(bufio.NewReaderSize(rec, maxFormLine), boundary)
	if ferr == nil {
		ferr = h.verifyForm(head, r.ContentLength, boundary)
	}
	if ferr != nil {
		h.refuseForm(w, ferr)
		return
	}
	// Uploading the file may take as long as it takes.
	_ = rc.SetReadDeadline(time.Time{})
	release()

	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(&rec.buf, r.Body), r.Body}
	r.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
	h.proxy.ServeHTTP(w, r)
}

// refuseForm answers a form that is not passed on. The connection closes:
// the rest of the body is not worth reading.
func (h *Handler) refuseForm(w http.ResponseWriter, e *formError) {
	w.Header().Set("Connection", "close")
	writeError(w, e.status, e.code, e.message)
}
