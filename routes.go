package caddyupload

import (
	"net/http"
	"strings"
)

// operation is one API call of the route.
type operation struct {
	name   string
	method string
	// readOnly operations may be authenticated by a cookie from another
	// site; every other one must come from the same site.
	readOnly bool
	// signedLink operations are authorized by the signed link in their
	// URL, not by the caller's credentials.
	signedLink bool
	serve      func(h *Handler, c *call) error
}

// The API, relative to the prefix the handler is mounted under; see route.
var (
	opCreate        = operation{name: "create", method: http.MethodPost, serve: (*Handler).serveCreate}
	opCompleteByKey = operation{name: "complete_by_key", method: http.MethodPost, serve: (*Handler).serveCompleteByKey}
	opGet           = operation{name: "get", method: http.MethodGet, readOnly: true, serve: (*Handler).serveGet}
	opAbort         = operation{name: "abort", method: http.MethodDelete, serve: (*Handler).serveAbort}
	opComplete      = operation{name: "complete", method: http.MethodPost, serve: (*Handler).serveComplete}
	opListParts     = operation{name: "list_parts", method: http.MethodGet, readOnly: true, serve: (*Handler).serveListParts}
	opSignParts     = operation{name: "sign_parts", method: http.MethodPost, serve: (*Handler).serveSignParts}
	opDownload      = operation{name: "download", method: http.MethodGet, readOnly: true, serve: (*Handler).serveDownload}
	opContent       = operation{name: "content", method: http.MethodGet, readOnly: true, signedLink: true, serve: (*Handler).serveContent}
	opUsage         = operation{name: "usage", method: http.MethodGet, readOnly: true, serve: (*Handler).serveUsage}

	// Companion-compatible routes under /s3, for stock @uppy/aws-s3.
	opCompanionParams   = operation{name: "companion_params", method: http.MethodGet, serve: (*Handler).serveCompanionParams}
	opCompanionCreate   = operation{name: "companion_create", method: http.MethodPost, serve: (*Handler).serveCompanionCreate}
	opCompanionList     = operation{name: "companion_list", method: http.MethodGet, readOnly: true, serve: (*Handler).serveCompanionList}
	opCompanionAbort    = operation{name: "companion_abort", method: http.MethodDelete, serve: (*Handler).serveCompanionAbort}
	opCompanionComplete = operation{name: "companion_complete", method: http.MethodPost, serve: (*Handler).serveCompanionComplete}
	opCompanionSign     = operation{name: "companion_sign", method: http.MethodGet, serve: (*Handler).serveCompanionSign}
)

// route maps a request to its operation and the upload id in its path:
//
//	POST   /                     create
//	POST   /complete             complete by key (POST policy uploads)
//	GET    /usage                the caller's usage and the route's quota
//	GET    /{id}                 the record
//	DELETE /{id}                 abort
//	POST   /{id}/complete        verify and confirm
//	GET    /{id}/parts           stored parts (resume)
//	POST   /{id}/parts           sign parts
//	GET    /{id}/download        redirect to a presigned GET (or DownloadVia)
//	GET    /{id}/content         the object, for a signed link (DownloadVia link)
//	GET    /s3/params            Companion: a POST policy upload
//	POST   /s3/multipart         Companion: create a multipart upload
//	GET    /s3/multipart/{id}    Companion: stored parts
//	DELETE /s3/multipart/{id}    Companion: abort
//	GET    /s3/multipart/{id}/{n}|batch   Companion: sign parts
//	POST   /s3/multipart/{id}/complete    Companion: complete and confirm
//
// A known path with another method is 405 with Allow; anything else 404.
func route(r *http.Request) (operation, string, *apiError) {
	path := strings.Trim(r.URL.Path, "/")
	var seg []string
	if path != "" {
		seg = strings.Split(path, "/")
	}
	if len(seg) >= 1 && seg[0] == "s3" {
		return routeCompanion(r, seg[1:])
	}
	switch {
	case len(seg) == 0:
		return pick(r, "", opCreate)
	case len(seg) == 1 && seg[0] == "complete":
		return pick(r, "", opCompleteByKey)
	case len(seg) == 1 && seg[0] == "usage":
		return pick(r, "", opUsage)
	case !validID(seg[0]) || len(seg) > 2:
		return operation{}, "", errNotFound()
	case len(seg) == 1:
		return pick(r, seg[0], opGet, opAbort)
	case seg[1] == "complete":
		return pick(r, seg[0], opComplete)
	case seg[1] == "parts":
		return pick(r, seg[0], opListParts, opSignParts)
	case seg[1] == "download":
		return pick(r, seg[0], opDownload)
	case seg[1] == "content":
		return pick(r, seg[0], opContent)
	}
	return operation{}, "", errNotFound()
}

func routeCompanion(r *http.Request, seg []string) (operation, string, *apiError) {
	switch {
	case len(seg) == 1 && seg[0] == "params":
		return pick(r, "", opCompanionParams)
	case len(seg) == 1 && seg[0] == "multipart":
		return pick(r, "", opCompanionCreate)
	case len(seg) < 2 || len(seg) > 3 || seg[0] != "multipart" || !validID(seg[1]):
		return operation{}, "", errNotFound()
	case len(seg) == 2:
		return pick(r, seg[1], opCompanionList, opCompanionAbort)
	case seg[2] == "complete":
		return pick(r, seg[1], opCompanionComplete)
	}
	return pick(r, seg[1], opCompanionSign)
}

// pick chooses among the operations of one path by method; GET ones also
// answer HEAD.
func pick(r *http.Request, id string, ops ...operation) (operation, string, *apiError) {
	allow := make([]string, 0, len(ops)+1)
	for _, op := range ops {
		if r.Method == op.method || op.method == http.MethodGet && r.Method == http.MethodHead {
			return op, id, nil
		}
		allow = append(allow, op.method)
		if op.method == http.MethodGet {
			allow = append(allow, http.MethodHead)
		}
	}
	return operation{}, "", errMethodNotAllowed(allow)
}
