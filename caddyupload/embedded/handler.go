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
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler passes presigned requests for the embedded server's bucket to the
// server (module `http.handlers.embedded_s3`). A request whose path is
// /<bucket> or /<bucket>/... is proxied when it is presigned (SigV4 query
// authentication), a browser form upload (POST policy) or a CORS preflight;
// the server checks the signature. Any other request on the bucket path is
// refused with 403, so the server's API is never open to the site's
// visitors; requests outside the bucket path go to the next handler.
//
// The body is streamed to the server on loopback, unbuffered: upload bytes
// cross Caddy's process once, on their way to local disk, and never reach
// the application behind Caddy. The Host header is kept, since the
// signature covers it.
type Handler struct {
	bucket    string
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
	h.setup(app.Store().Bucket(), app.ListenAddr())
	return nil
}

// setup points the handler at the server on listen.
func (h *Handler) setup(bucket, listen string) {
	h.bucket = bucket
	target := &url.URL{Scheme: "http", Host: listen}
	h.transport = &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	h.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
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
	if !presigned(r, h.bucket) {
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

// presigned reports whether r authenticates itself the way browsers holding
// a request from the upload handler do. Header-signed requests are not
// among them: only Caddy holds the server's credentials, and it talks to the
// server directly.
func presigned(r *http.Request, bucket string) bool {
	q := r.URL.Query()
	switch {
	case q.Get("X-Amz-Algorithm") != "" && q.Get("X-Amz-Signature") != "":
		return true
	case r.Method == http.MethodPost && (r.URL.Path == "/"+bucket || r.URL.Path == "/"+bucket+"/"):
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		return err == nil && mt == "multipart/form-data"
	case r.Method == http.MethodOptions:
		return r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != ""
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
