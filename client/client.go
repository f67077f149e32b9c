// Package client uploads files through a caddyupload route from Go: create,
// send the bytes straight to object storage (parts in parallel for large
// files), complete. Memory stays flat: parts are read from the file as
// they are sent, never buffered whole. On Linux, parts of an *os.File go
// from the page cache to the socket with sendfile, each sender reading
// through its own descriptor of the file.
//
// By default the client declares the SHA-256 of what it sends: of the whole
// file for a single PUT, of each part for a multipart upload. The route
// signs each checksum into its URL, so storage itself refuses bytes that
// differ from what was hashed, including a part cut off mid-body.
package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Client talks to one upload route.
type Client struct {
	// Base is the route's URL, e.g. https://example.com/uploads.
	Base string
	// Auth adds credentials to every API request (not to storage
	// requests, which carry their own signature). Optional.
	Auth func(*http.Request)
	// HTTP is the client for API and storage requests. Default: one
	// shared by the package, http.DefaultTransport's settings but keeping
	// a connection alive for each part in flight (DefaultTransport keeps
	// two per host, so more parallel parts would dial anew for every
	// part), and no overall timeout (large parts take long).
	HTTP *http.Client
	// Concurrency is how many parts go up at once. Default: 4.
	Concurrency int
	// Retries is how often a failed part is retried. Default: 3.
	Retries int
	// Progress, when set, is called with the bytes sent so far.
	Progress func(sent, total int64)
	// MultipartThreshold is the route's multipart_threshold: a file of at
	// most this many bytes goes up in one request, and its SHA-256 is
	// declared at create (the server verifies a whole-file checksum for
	// single PUTs only). Set it when the route's differs. Default: 100 MiB,
	// the route's default.
	MultipartThreshold int64
	// DisableChecksums stops computing and declaring SHA-256 checksums, so
	// each file is read once instead of twice; storage then checks only
	// lengths. Routes with require_checksum refuse such uploads. Default:
	// false, checksums are declared.
	DisableChecksums bool
}

// defaultMultipartThreshold is the route's default multipart_threshold.
const defaultMultipartThreshold = 100 << 20

// Bearer returns an Auth function for a bearer token.
func Bearer(token string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
}

// Basic returns an Auth function for HTTP basic authentication.
func Basic(user, password string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(user, password) }
}

// Record is an upload as the API describes it.
type Record struct {
	ID          string            `json:"id"`
	Key         string            `json:"key"`
	Status      string            `json:"status"`
	Filename    string            `json:"filename"`
	Size        int64             `json:"size"`
	Type        string            `json:"type"`
	SHA256      string            `json:"sha256,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	CreatedAt   time.Time         `json:"created_at"`
	ConfirmedAt *time.Time        `json:"confirmed_at,omitempty"`
}

// Error is an error answer of the API.
type Error struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

type created struct {
	ID        string            `json:"id"`
	Method    string            `json:"method"`
	URL       string            `json:"url"`
	Headers   map[string]string `json:"headers"`
	Fields    map[string]string `json:"fields"`
	Multipart *struct {
		PartSize  int64 `json:"part_size"`
		PartCount int32 `json:"part_count"`
	} `json:"multipart"`
}

// File describes what to upload. Body is read with ReadAt, so parts can
// be sent concurrently from one open file.
type File struct {
	Name     string
	Type     string
	Size     int64
	Body     io.ReaderAt
	Metadata map[string]string
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP()
}

// defaultHTTP is DefaultTransport with room for an idle connection per
// part in flight, to storage and to the route alike.
var defaultHTTP = sync.OnceValue(func() *http.Client {
	t, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return http.DefaultClient
	}
	t = t.Clone()
	t.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: t}
})

// Upload sends f and returns the confirmed record.
func (c *Client) Upload(ctx context.Context, f File) (*Record, error) {
	cr, err := c.create(ctx, f)
	if err != nil {
		return nil, err
	}
	var done *completion
	switch {
	case cr.Multipart != nil:
		done, err = c.multipart(ctx, cr.ID, cr.Multipart.PartSize, cr.Multipart.PartCount, f)
	case cr.Method == http.MethodPost:
		err = c.postForm(ctx, cr, f)
	default:
		err = c.put(ctx, cr.URL, cr.Headers, io.NewSectionReader(f.Body, 0, f.Size), f.Size)
		if c.Progress != nil && err == nil {
			c.Progress(f.Size, f.Size)
		}
	}
	if err != nil {
		_ = c.api(context.WithoutCancel(ctx), http.MethodDelete, "/"+cr.ID, nil, nil)
		return nil, err
	}
	var body any
	if done != nil {
		body = done
	}
	var rec Record
	if err := c.api(ctx, http.MethodPost, "/"+cr.ID+"/complete", body, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// create creates the upload, declaring the file's SHA-256 when it will be a
// single PUT.
func (c *Client) create(ctx context.Context, f File) (created, error) {
	var cr created
	req := map[string]any{"filename": f.Name, "size": f.Size, "type": f.Type, "metadata": f.Metadata}
	threshold := c.MultipartThreshold
	if threshold <= 0 {
		threshold = defaultMultipartThreshold
	}
	if c.DisableChecksums || f.Size > threshold {
		return cr, c.api(ctx, http.MethodPost, "/", req, &cr)
	}
	sum, err := sha256Hex(ctx, io.NewSectionReader(f.Body, 0, f.Size))
	if err != nil {
		return cr, err
	}
	req["sha256"] = sum
	err = c.api(ctx, http.MethodPost, "/", req, &cr)
	var ae *Error
	if errors.As(err, &ae) && ae.Code == "invalid_request" {
		// The route refuses a whole-file checksum it cannot verify: it
		// sends this file otherwise (method post, or a multipart_threshold
		// below MultipartThreshold). Without it the upload is what the
		// route makes of it, and a multipart upload still gets part
		// checksums. Any other invalid_request comes back again.
		delete(req, "sha256")
		cr = created{}
		err = c.api(ctx, http.MethodPost, "/", req, &cr)
	}
	return cr, err
}

// sha256Hex hashes r in a loop that stops when ctx is done; files can be
// large, and this reads them whole.
func sha256Hex(ctx context.Context, r io.Reader) (string, error) {
	h := sha256.New()
	buf := make([]byte, 256<<10)
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n, err := r.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			return hex.EncodeToString(h.Sum(nil)), nil
		}
		if err != nil {
			return "", err
		}
	}
}

// hashPart hashes size bytes of r from off into a hex SHA-256, reading
// through buf (reused across parts), and stops when ctx is done.
func hashPart(ctx context.Context, r io.ReaderAt, off, size int64, buf []byte) (string, error) {
	h := sha256.New()
	for done := int64(0); done < size; {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n, err := r.ReadAt(buf[:min(int64(len(buf)), size-done)], off+done)
		h.Write(buf[:n])
		done += int64(n)
		if err == io.EOF && done < size {
			return "", io.ErrUnexpectedEOF
		}
		if err != nil && err != io.EOF {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

type completion struct {
	Parts []partETag `json:"parts"`
}

type partETag struct {
	Number int32  `json:"number"`
	ETag   string `json:"etag"`
}

type signedParts struct {
	Parts []struct {
		Number  int32             `json:"number"`
		URL     string            `json:"url"`
		Headers map[string]string `json:"headers"`
	} `json:"parts"`
	ExpiresAt time.Time `json:"expires_at"`
}

// multipart uploads every part with Concurrency senders. With checksums,
// hashers read the parts through SHA-256 ahead of the senders (at most
// Concurrency parts ahead, and only the sums are kept, not the bytes); a
// signer signs the parts ready for sending, several in one call, so that a
// sender goes from one part to the next without waiting for a hash or a
// signature. A signature unused for half its lifetime (a slow link) is
// not used: the sender signs the part again. Each sender has, for an
// *os.File on Linux, its own descriptor of the file to send from.
func (c *Client) multipart(ctx context.Context, id string, partSize int64, count int32, f File) (*completion, error) {
	workers := c.Concurrency
	if workers <= 0 {
		workers = 4
	}
	workers = max(1, min(workers, int(count)))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	etags := make([]partETag, count)
	var sent int64
	var mu sync.Mutex
	var firstErr error
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
		mu.Unlock()
	}
	span := func(n int32) (off, size int64) {
		off = int64(n-1) * partSize
		return off, min(partSize, f.Size-off)
	}

	// feed → numbers → hashers → ready → signer → signed → senders;
	// without checksums feed fills ready itself.
	ready := make(chan part, workers)
	signed := make(chan part, workers)
	numbers := ready
	var stages sync.WaitGroup
	if !c.DisableChecksums {
		numbers = make(chan part)
		hashers := max(1, min(workers, runtime.GOMAXPROCS(0)))
		var hwg sync.WaitGroup
		for range hashers {
			hwg.Add(1)
			go func() {
				defer hwg.Done()
				buf := make([]byte, min(hashBufSize, partSize))
				for p := range numbers {
					off, size := span(p.n)
					var err error
					if p.sum, err = hashPart(ctx, f.Body, off, size, buf); err != nil {
						fail(fmt.Errorf("part %d: %w", p.n, err))
						return
					}
					select {
					case ready <- p:
					case <-ctx.Done():
						return
					}
				}
			}()
		}
		stages.Add(1)
		go func() { defer stages.Done(); hwg.Wait(); close(ready) }()
	}
	stages.Add(1)
	go func() {
		defer stages.Done()
		defer close(numbers)
		for n := int32(1); n <= count; n++ {
			select {
			case numbers <- part{n: n}:
			case <-ctx.Done():
				return
			}
		}
	}()
	stages.Add(1)
	go func() {
		defer stages.Done()
		defer close(signed)
		c.signAhead(ctx, id, ready, signed, workers)
	}()

	var senders sync.WaitGroup
	for range workers {
		senders.Add(1)
		go func() {
			defer senders.Done()
			src := newPartSource(f.Body)
			defer src.Close()
			for p := range signed {
				off, size := span(p.n)
				etag, err := c.uploadPart(ctx, id, p, src, off, size)
				if err != nil {
					fail(fmt.Errorf("part %d: %w", p.n, err))
					return
				}
				mu.Lock()
				etags[p.n-1] = partETag{Number: p.n, ETag: etag}
				sent += size
				if c.Progress != nil {
					c.Progress(sent, f.Size)
				}
				mu.Unlock()
			}
		}()
	}
	senders.Wait()
	cancel() // a sender that failed left parts behind: stop the stages
	stages.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil && sent < f.Size {
		return nil, err
	}
	return &completion{Parts: etags}, nil
}

// part is a part on its way: its number, its SHA-256 in hex (with
// checksums), and once signed, where to send it and until when to use
// that signature.
type part struct {
	n       int32
	sum     string
	url     string
	headers map[string]string
	useBy   time.Time
}

// signAhead signs the parts from ready and passes them on to signed: each
// call signs what is ready at the time, up to max parts. A call that fails
// passes its parts on unsigned; their senders sign them, with retries.
func (c *Client) signAhead(ctx context.Context, id string, ready <-chan part, signed chan<- part, most int) {
	for {
		var batch []part
		select {
		case p, ok := <-ready:
			if !ok {
				return
			}
			batch = append(batch, p)
		case <-ctx.Done():
			return
		}
	more:
		for len(batch) < most {
			select {
			case p, ok := <-ready:
				if !ok {
					break more
				}
				batch = append(batch, p)
			default:
				break more
			}
		}
		_ = c.sign(ctx, id, batch)
		for _, p := range batch {
			select {
			case signed <- p:
			case <-ctx.Done():
				return
			}
		}
	}
}

// sign signs parts in one call, setting their url, headers and useBy.
// useBy is half the signatures' lifetime from now, measured on the
// route's clock (its expires_at against its Date), so that a client clock
// set wrong does not matter.
func (c *Client) sign(ctx context.Context, id string, parts []part) error {
	req := map[string]any{}
	numbers := make([]int32, len(parts))
	var sums []string
	for i, p := range parts {
		numbers[i] = p.n
		if p.sum != "" {
			sums = append(sums, p.sum)
		}
	}
	req["numbers"] = numbers
	if len(sums) > 0 {
		req["sha256"] = sums
	}
	var sp signedParts
	now := time.Now()
	h, err := c.apiHeader(ctx, http.MethodPost, "/"+id+"/parts", req, &sp)
	if err != nil {
		return err
	}
	if len(sp.Parts) != len(parts) {
		return fmt.Errorf("the server signed %d parts, not %d", len(sp.Parts), len(parts))
	}
	var useBy time.Time
	if date, err := http.ParseTime(h.Get("Date")); err == nil && !sp.ExpiresAt.IsZero() {
		// Date has whole seconds: take off one more.
		useBy = now.Add((sp.ExpiresAt.Sub(date) - time.Second) / 2)
	}
	for i := range parts {
		if sp.Parts[i].Number != parts[i].n {
			return fmt.Errorf("the server signed part %d for %d", sp.Parts[i].Number, parts[i].n)
		}
		parts[i].url, parts[i].headers, parts[i].useBy = sp.Parts[i].URL, sp.Parts[i].Headers, useBy
	}
	return nil
}

// hashBufSize is what a worker reads at a time to hash a part.
const hashBufSize = 1 << 20

// uploadPart sends one part, retrying with backoff. It uses the part's
// signature while it is fresh and otherwise signs the part again, as
// every retry does, so an expired URL heals itself. The part's SHA-256, if
// any, is signed into the URL, and the header it becomes is sent.
func (c *Client) uploadPart(ctx context.Context, id string, p part, src partSource, off, size int64) (string, error) {
	retries := c.Retries
	if retries <= 0 {
		retries = 3
	}
	var last error
	for attempt := 0; attempt <= retries; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt*attempt) * 500 * time.Millisecond):
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		if attempt > 0 || p.url == "" || !time.Now().Before(p.useBy) {
			parts := []part{{n: p.n, sum: p.sum}}
			if err := c.sign(ctx, id, parts); err != nil {
				var ae *Error
				if errors.As(err, &ae) && ae.Status < 500 {
					return "", err
				}
				last = err
				continue
			}
			p = parts[0]
		}
		body, err := src.Part(off, size)
		if err != nil {
			return "", err
		}
		resp, err := c.send(ctx, http.MethodPut, p.url, p.headers, body, size)
		if err != nil {
			last = err
			continue
		}
		// Read to the end, so that the connection goes back to the pool.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			return strings.Trim(resp.Header.Get("ETag"), `"`), nil
		}
		last = fmt.Errorf("storage answered %s", resp.Status)
		if resp.StatusCode == http.StatusBadRequest {
			// Bytes that differ from their signed checksum (the file
			// changed since it was hashed) differ again on a retry.
			return "", last
		}
	}
	return "", last
}

func (c *Client) put(ctx context.Context, url string, headers map[string]string, body io.Reader, size int64) error {
	resp, err := c.send(ctx, http.MethodPut, url, headers, body, size)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("storage refused the upload: %s", resp.Status)
	}
	return nil
}

// postForm sends a POST policy form with the file as its last field. The
// form's head and tail are built in memory and the file streamed between
// them, so the request has a Content-Length (storage servers refuse
// chunked form uploads) without buffering the file.
func (c *Client) postForm(ctx context.Context, cr created, f File) error {
	var head bytes.Buffer
	mw := multipart.NewWriter(&head)
	for k, v := range cr.Fields {
		if err := mw.WriteField(k, v); err != nil {
			return err
		}
	}
	if _, err := mw.CreateFormFile("file", f.Name); err != nil {
		return err
	}
	headLen := head.Len()
	if err := mw.Close(); err != nil {
		return err
	}
	tail := append([]byte(nil), head.Bytes()[headLen:]...)
	head.Truncate(headLen)
	body := io.MultiReader(&head, io.NewSectionReader(f.Body, 0, f.Size), bytes.NewReader(tail))
	size := int64(headLen) + f.Size + int64(len(tail))
	resp, err := c.send(ctx, http.MethodPost, cr.URL, map[string]string{"Content-Type": mw.FormDataContentType()}, body, size)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("storage refused the upload: %s", resp.Status)
	}
	return nil
}

func (c *Client) send(ctx context.Context, method, url string, headers map[string]string, body io.Reader, size int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, err
	}
	if size >= 0 {
		req.ContentLength = size
	}
	for k, v := range headers {
		if !strings.EqualFold(k, "Content-Length") {
			req.Header.Set(k, v)
		}
	}
	return c.http().Do(req)
}

// api calls the route's JSON API.
func (c *Client) api(ctx context.Context, method, path string, in, out any) error {
	_, err := c.apiHeader(ctx, method, path, in, out)
	return err
}

// apiHeader is api that also returns the answer's header.
func (c *Client) apiHeader(ctx context.Context, method, path string, in, out any) (http.Header, error) {
	var body io.Reader
	if in != nil {
		js, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(js)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.Base, "/")+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Auth != nil {
		c.Auth(req)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Status: resp.StatusCode}
		var wrapped struct {
			Error *Error `json:"error"`
		}
		if json.Unmarshal(data, &wrapped) == nil && wrapped.Error != nil {
			e.Code, e.Message = wrapped.Error.Code, wrapped.Error.Message
		} else {
			e.Code, e.Message = "http_"+strconv.Itoa(resp.StatusCode), strings.TrimSpace(string(data))
		}
		return resp.Header, e
	}
	if out != nil && len(data) > 0 {
		return resp.Header, json.Unmarshal(data, out)
	}
	return resp.Header, nil
}
