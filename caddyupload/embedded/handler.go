package embedded

import (
	"errors"
	"mime"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddyupload/caddyupload"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler passes presigned requests for the embedded server's bucket to the
// server (module `http.handlers.embedded_s3`). A request whose path is
// /<bucket> or /<bucket>/... is proxied when it is presigned (SigV4 query
// authentication), a browser form upload (POST policy) or a CORS preflight;
// any other request on the bucket path is refused with 403, so the server's
// API is never open to the site's visitors; requests outside the bucket
// path go to the next handler.
//
// Nothing unauthenticated reaches the server with a body it would buffer:
// a form upload's signature and expiration are verified here, from its
// fields read within fixed bounds, before any of it is passed on; a
// presigned request must be for the server's key and region and unexpired
// (the server verifies its signature), and no request but a verified form
// may carry a multipart body. The access log records these requests
// without their signatures.
//
// The body is streamed to the server on loopback, unbuffered: upload bytes
// cross Caddy's process once, on their way to local disk, and never reach
// the application behind Caddy. The Host header is kept, since the
// signature covers it (X-Forwarded-Host instead, when one of Caddy's
// trusted proxies sets it).
type Handler struct {
	bucket    string
	signer    signer
	verifying chan struct{} // one token per form being verified
	proxy     *httputil.ReverseProxy
	transport *http.Transport
	logger    *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.embedded_s3",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision loads the embedded_s3 app (with its defaults when the config
// does not mention it) and sets up the proxy to it.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	appVal, err := ctx.App("embedded_s3")
	if err != nil {
		return err
	}
	app := appVal.(*App)
	h.setup(app.Store().Bucket(), app.ListenAddr(), app.signer())
	return nil
}

// setup points the handler at the server on listen, whose requests are
// signed by s.
func (h *Handler) setup(bucket, listen string, s signer) {
	h.bucket = bucket
	h.signer = s
	h.verifying = make(chan struct{}, maxVerifying)
	target := &url.URL{Scheme: "http", Host: listen}
	h.transport = &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	h.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = signedHost(pr.In)
			// Credentials for the site are not for the storage server:
			// with query authentication an Authorization header would even
			// be checked instead of the signature.
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Del("Proxy-Authorization")
			pr.Out.Header.Del("Cookie")
		},
		Transport:      h.transport,
		FlushInterval:  -1,
		ErrorHandler:   h.proxyError,
		ModifyResponse: hardenResponse,
	}
}

// signedHost is the host the browser addressed, which its request's
// signature covers: the Host header, or X-Forwarded-Host when one of
// Caddy's trusted proxies (the trusted_proxies server option) sent the
// request and set it, as a proxy that passes requests on under another
// host name does.
func signedHost(r *http.Request) string {
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
		fwd, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Host"), ",")
		fwd = strings.TrimSpace(fwd)
		if u, err := url.Parse("//" + fwd); fwd != "" && err == nil && u.Host == fwd && u.User == nil {
			return fwd
		}
	}
	return r.Host
}

// hardenResponse makes objects served from the site's own origin inert:
// an uploaded HTML or SVG file must never run as the site (downloads are
// attachments already; this also covers a URL opened directly).
func hardenResponse(resp *http.Response) error {
	h := resp.Header
	h.Del("Server") // Caddy sends its own
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !h.inBucket(r.URL.Path) {
		return next.ServeHTTP(w, r)
	}
	q := r.URL.Query()
	if hasCredentials(q) {
		var logged func()
		w, logged = caddyupload.LogWithoutCredentials(w, r)
		defer logged()
	}
	switch {
	case isForm(r, h.bucket) && len(q) == 0:
		h.serveForm(w, r)
		return nil
	case multipartBody(r.Header):
		// The server's HTTP library parses any multipart body into memory
		// before the request reaches a signature check.
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_type", "only a form upload to the bucket may have a multipart body")
		return nil
	case q.Get("X-Amz-Algorithm") != "" && q.Get("X-Amz-Signature") != "":
		if err := h.signer.checkQuery(q); err != nil {
			writeError(w, http.StatusForbidden, "forbidden", err.Error())
			return nil
		}
	case preflight(r):
	default:
		writeError(w, http.StatusForbidden, "forbidden", "the storage path accepts presigned requests only")
		return nil
	}
	h.proxy.ServeHTTP(w, r)
	return nil
}

func (h *Handler) inBucket(path string) bool {
	rest, ok := strings.CutPrefix(path, "/"+h.bucket)
	return ok && (rest == "" || rest[0] == '/')
}

// Header-signed requests are never passed on: only Caddy holds the
// server's credentials, and it talks to the server directly.

// isForm reports whether r is a browser form upload: a multipart POST to
// the bucket itself.
func isForm(r *http.Request, bucket string) bool {
	if r.Method != http.MethodPost || (r.URL.Path != "/"+bucket && r.URL.Path != "/"+bucket+"/") {
		return false
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "multipart/form-data"
}

// multipartBody reports whether any Content-Type of the request could make
// the server parse its body as a form (its HTTP library does so for
// "multipart/form-data"; other multipart types, e.g. an MHTML file's
// multipart/related, are uploads like any other).
func multipartBody(h http.Header) bool {
	for _, v := range h.Values("Content-Type") {
		if strings.Contains(strings.ToLower(v), "multipart/form-data") {
			return true
		}
	}
	return false
}

// preflight reports whether r is a CORS preflight.
func preflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != ""
}

// hasCredentials reports whether the query carries presigned credentials,
// which must stay out of the access log.
func hasCredentials(q url.Values) bool {
	for k := range q {
		if len(k) > 6 && strings.EqualFold(k[:6], "x-amz-") {
			return true
		}
	}
	return false
}

// proxyError answers 502 when the server cannot be reached. The logged
// error leaves out the URL: its query is a bearer credential.
func (h *Handler) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	if r.Context().Err() != nil {
		// The browser went away mid-request (a cancelled or interrupted
		// upload): nothing is wrong with the server.
		h.logger.Debug("client closed the request", zap.String("method", r.Method), zap.String("path", r.URL.Path))
		w.WriteHeader(499)
		return
	}
	h.logger.Error("embedded S3 server unreachable", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
	writeError(w, http.StatusBadGateway, "storage_unavailable", "the storage server is unavailable")
}

// Cleanup closes the idle connections to the server.
func (h *Handler) Cleanup() error {
	if h.transport != nil {
		h.transport.CloseIdleConnections()
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
