package caddyupload

import (
	"context"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// call is one API request on its way through the handler: everything an
// operation needs, passed explicitly.
type call struct {
	w   http.ResponseWriter
	r   *http.Request
	who identity
	// id is the upload id named in the path, if any (syntax checked only).
	id string
	// next is the handler after this one: the application a forwarding
	// route hands completions to.
	next caddyhttp.Handler
}

func (c *call) ctx() context.Context { return c.r.Context() }

// ServeHTTP implements caddyhttp.MiddlewareHandler: it finds the operation
// from the method and path alone (so unknown paths and methods are answered
// before any authentication work), authenticates the caller, applies the
// cross-origin rule and runs the operation.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if r.URL.Path == "/client.js" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		serveClientJS(w, r)
		return nil
	}
	stripUploadHeaders(r.Header)
	op, id, aerr := route(r)
	if aerr == nil {
		c := &call{w: w, r: r, id: id, next: next}
		// With the public download policy, anyone holding the id may
		// download: no credentials needed.
		if !op.signedLink && (op.name != "download" || h.Download != "public") {
			c.who, aerr = h.auth.authenticate(r)
		}
		if aerr == nil && c.who.Ambient && !op.readOnly && crossOrigin(r, ownOrigin(r), h.TrustedOrigins) {
			aerr = errForbidden("a request authenticated by the browser's own credentials must come from this site's origin")
		}
		if aerr == nil {
			err := op.serve(h, c)
			if err == nil {
				return nil
			}
			aerr = asAPIError(err)
		}
	}
	h.answerError(w, op.name, aerr)
	return nil
}

// answerError logs, counts and writes the error an operation ends with.
func (h *Handler) answerError(w http.ResponseWriter, op string, aerr *apiError) {
	h.logError(op, aerr)
	h.metrics.apiError(aerr.Code)
	writeError(w, aerr)
}

func (h *Handler) logError(op string, e *apiError) {
	level := zapcore.DebugLevel
	if e.Status >= 500 {
		level = zapcore.ErrorLevel
	}
	if ce := h.logger.Check(level, "upload request failed"); ce != nil {
		fields := []zap.Field{zap.String("route", h.Name), zap.String("op", op), zap.Int("status", e.Status), zap.String("code", e.Code)}
		if e.cause != nil {
			fields = append(fields, zap.Error(e.cause))
		}
		ce.Write(fields...)
	}
}

// stripUploadHeaders removes client-sent copies of the trusted headers
// that a forwarding route sets for the application.
func stripUploadHeaders(h http.Header) {
	for k := range h {
		if strings.HasPrefix(k, "X-Upload-") {
			delete(h, k)
		}
	}
}
