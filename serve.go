package caddyupload

import (
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// operation is one API call, found from the method and path alone so that
// unknown paths and methods are answered before any authentication work.
type operation struct {
	name string
	id   string
	// readOnly operations may be authenticated by a cookie from another
	// site; every other one must come from the same site.
	readOnly bool
	serve    func(h *Handler, w http.ResponseWriter, r *http.Request, who identity, id string) error
}

// route maps a request to its operation; paths are relative to the
// prefix the handler is mounted under.
func route(r *http.Request) (operation, *apiError) {
	path := strings.Trim(r.URL.Path, "/")
	var seg []string
	if path != "" {
		seg = strings.Split(path, "/")
	}
	allow := func(methods ...string) (string, bool) {
		for _, m := range methods {
			if r.Method == m {
				return m, true
			}
		}
		return strings.Join(methods, ", "), false
	}
	switch {
	case len(seg) == 0:
		if _, ok := allow(http.MethodPost); ok {
			return operation{name: "create", serve: (*Handler).serveCreate}, nil
		}
	case len(seg) == 1 && seg[0] == "complete":
		if _, ok := allow(http.MethodPost); ok {
			return operation{name: "complete_by_key", serve: (*Handler).serveCompleteByKey}, nil
		}
	case len(seg) >= 1 && seg[0] == "s3":
		return routeCompanion(r, seg[1:])
	case !validID(seg[0]):
		return operation{}, errNotFound()
	case len(seg) == 1:
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			return operation{name: "get", id: seg[0], readOnly: true, serve: (*Handler).serveGet}, nil
		case http.MethodDelete:
			return operation{name: "abort", id: seg[0], serve: (*Handler).serveAbort}, nil
		}
	case len(seg) == 2 && seg[1] == "complete":
		if _, ok := allow(http.MethodPost); ok {
			return operation{name: "complete", id: seg[0], serve: (*Handler).serveComplete}, nil
		}
	case len(seg) == 2 && seg[1] == "parts":
		switch r.Method {
		case http.MethodGet:
			return operation{name: "list_parts", id: seg[0], readOnly: true, serve: (*Handler).serveListParts}, nil
		case http.MethodPost:
			return operation{name: "sign_parts", id: seg[0], serve: (*Handler).serveSignParts}, nil
		}
	case len(seg) == 2 && seg[1] == "download":
		if r.Method == http.MethodGet {
			return operation{name: "download", id: seg[0], readOnly: true, serve: (*Handler).serveDownload}, nil
		}
	default:
		return operation{}, errNotFound()
	}
	return operation{}, errMethodNotAllowed()
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if r.URL.Path == "/client.js" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		serveClientJS(w, r)
		return nil
	}
	stripUploadHeaders(r.Header)
	if h.Forward != nil {
		r = withNext(r, next)
	}
	op, aerr := route(r)
	if aerr == nil {
		var who identity
		// With the public download policy, anyone holding the id may
		// download: no credentials needed.
		if op.name != "download" || h.Download != "public" {
			who, aerr = h.auth.authenticate(r)
		}
		if aerr == nil && who.FromCookie && !op.readOnly && crossSite(r) {
			aerr = errForbidden("a cookie-authenticated request must come from the same site")
		}
		if aerr == nil {
			err := op.serve(h, w, r, who, op.id)
			if err == nil {
				return nil
			}
			aerr = asAPIError(err)
		}
	}
	h.logError(r, op.name, aerr)
	writeError(w, aerr)
	return nil
}

func (h *Handler) logError(r *http.Request, op string, e *apiError) {
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
