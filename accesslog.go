package caddyupload

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// A presigned URL is a bearer credential: whoever reads it from a log can
// use it until it expires. Caddy's access log records the request URI (the
// signature is in the query of every presigned request) and the response
// headers (a download's Location is a presigned GET). Caddy marshals the
// request it cloned before any handler ran, so no handler can edit that
// entry; what a handler can do is ask Caddy to skip it (the log_skip
// variable) and write the same entry itself, with the credentials taken out.
// That is what LogWithoutCredentials does. It needs no operator config.

// credentialParams are the query parameters taken out of logged URIs:
// the signature authorizes the request, the credential names the key and
// a security token is a credential of its own; CloudFront signed URLs
// carry theirs in Signature and download links in sig. The rest (date,
// expiry, signed headers, upload id, part number) stays, for
// troubleshooting.
var credentialParams = []string{"x-amz-signature", "x-amz-credential", "x-amz-security-token", "signature", "sig"}

// LogWithoutCredentials replaces Caddy's access log entry for r with one
// whose request URI and Location response header carry no presigned
// credentials; everything else is as Caddy would log it, except fields that
// other handlers add with log_append. Use the returned writer for the
// response and call done once the response is complete. Nothing changes
// when the site has no access log, when the request is not logged anyway,
// or when the server is configured to log credentials (log_credentials).
func LogWithoutCredentials(w http.ResponseWriter, r *http.Request) (_ http.ResponseWriter, done func()) {
	ctx := r.Context()
	srv, _ := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if srv == nil || srv.Logs == nil || srv.Logs.ShouldLogCredentials || !accessLogged(srv.Logs, r.Host) {
		return w, func() {}
	}
	if skip, _ := caddyhttp.GetVar(ctx, caddyhttp.LogSkipVar).(bool); skip {
		return w, func() {}
	}
	caddyhttp.SetVar(ctx, caddyhttp.LogSkipVar, true)

	start := time.Now()
	rec := caddyhttp.NewResponseRecorder(w, nil, nil)
	var body *countingBody
	if r.Body != nil && r.Body != http.NoBody {
		body = &countingBody{ReadCloser: r.Body}
		r.Body = body
	}
	return rec, func() {
		read := 0
		if body != nil {
			read = int(body.n)
		}
		writeAccessEntry(srv.Logs, r, rec, time.Since(start), read)
	}
}

// redirectPresigned answers 302 to a presigned URL, with the URL's
// credentials kept out of the access log.
func redirectPresigned(w http.ResponseWriter, r *http.Request, presigned string) {
	w, done := LogWithoutCredentials(w, r)
	defer done()
	http.Redirect(w, r, presigned, http.StatusFound)
}

// countingBody counts the request body bytes a handler reads.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

// accessLogged mirrors Caddy's choice of the requests it logs.
func accessLogged(logs *caddyhttp.ServerLogConfig, hostport string) bool {
	host := logHost(hostport)
	for name := range logs.LoggerNames {
		if certmagic.MatchWildcard(host, name) {
			return true
		}
	}
	for _, skip := range logs.SkipHosts {
		if certmagic.MatchWildcard(host, skip) {
			return false
		}
	}
	return !logs.SkipUnmappedHosts
}

// accessLoggerNames mirrors how Caddy picks the loggers of a request: the
// access_logger_names variable (the log_name directive), else the names
// mapped to the host, else the default.
func accessLoggerNames(logs *caddyhttp.ServerLogConfig, r *http.Request) []string {
	if names, ok := caddyhttp.GetVar(r.Context(), caddyhttp.AccessLoggerNameVarKey).([]any); ok {
		out := make([]string, 0, len(names))
		for _, n := range names {
			if s, ok := n.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	host := strings.ToLower(logHost(r.Host))
	if names, ok := logs.LoggerNames[host]; ok {
		return names
	}
	labels := strings.Split(host, ".")
	for i := range labels {
		if labels[i] == "" {
			continue
		}
		labels[i] = "*"
		if names, ok := logs.LoggerNames[strings.Join(labels, ".")]; ok {
			return names
		}
	}
	return []string{logs.DefaultLoggerName}
}

// accessLogModule stands for the logger Caddy's access log entries come
// from; Caddy picks the configured logs that may receive an entry by the
// module name a logger is made for.
type accessLogModule struct{}

func (accessLogModule) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.log.access"}
}

// writeAccessEntry writes the entry Caddy would have written (see
// caddyhttp.Server.logRequest), with credentials taken out.
func writeAccessEntry(logs *caddyhttp.ServerLogConfig, r *http.Request, rec caddyhttp.ResponseRecorder, took time.Duration, read int) {
	ctx := r.Context()
	status := rec.Status()
	level := zapcore.InfoLevel
	if status >= 500 {
		level = zapcore.ErrorLevel
	}
	if name, ok := caddyhttp.GetVar(ctx, caddyhttp.LogLevelVar).(string); ok {
		if l, err := zapcore.ParseLevel(name); err == nil && l >= zapcore.DebugLevel && l <= zapcore.ErrorLevel {
			level = l
		}
	}
	message := "handled request"
	if nop, ok := caddyhttp.GetVar(ctx, "unhandled").(bool); ok && nop {
		message = "NOP"
	}

	// Method and URI as they arrived: handle_path and rewrites change r's.
	logged := r.WithContext(ctx)
	if orig, ok := ctx.Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok {
		logged.Method, logged.RequestURI, logged.RemoteAddr = orig.Method, orig.RequestURI, orig.RemoteAddr
	}
	logged.RequestURI = redactURI(logged.RequestURI)
	respHeader := rec.Header().Clone()
	if loc := respHeader.Get("Location"); loc != "" {
		respHeader.Set("Location", redactURI(loc))
	}
	userID := ""
	if repl, ok := ctx.Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		userID, _ = repl.GetString("http.auth.user.id")
	}

	base := caddy.ActiveContext().Logger(accessLogModule{})
	var fields []zapcore.Field
	for _, name := range accessLoggerNames(logs, r) {
		logger := base
		if name != "" {
			logger = base.Named(name)
		}
		c := logger.Check(level, message)
		if c == nil {
			continue
		}
		if fields == nil {
			fields = []zapcore.Field{
				zap.Object("request", caddyhttp.LoggableHTTPRequest{Request: logged}),
				zap.Int("bytes_read", read),
				zap.String("user_id", userID),
				zap.Duration("duration", took),
				zap.Int("size", rec.Size()),
				zap.Int("status", status),
				zap.Object("resp_headers", caddyhttp.LoggableHTTPHeader{Header: respHeader}),
			}
		}
		c.Write(fields...)
	}
}

// redactURI takes the credential parameters out of the query of a request
// URI or URL, keeping every other byte as it was.
func redactURI(uri string) string {
	head, query, ok := strings.Cut(uri, "?")
	if !ok {
		return uri
	}
	fragment := ""
	if i := strings.IndexByte(query, '#'); i >= 0 {
		query, fragment = query[:i], query[i:]
	}
	kept := make([]string, 0, 8)
	for param := range strings.SplitSeq(query, "&") {
		name, _, _ := strings.Cut(param, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
		if isCredentialParam(name) {
			continue
		}
		kept = append(kept, param)
	}
	if len(kept) == 0 {
		return head + fragment
	}
	return head + "?" + strings.Join(kept, "&") + fragment
}

func isCredentialParam(name string) bool {
	for _, p := range credentialParams {
		if strings.EqualFold(name, p) {
			return true
		}
	}
	return false
}

// logHost strips the port as Caddy does when it maps hosts to loggers.
func logHost(hostport string) string {
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		return host
	}
	return hostport
}
