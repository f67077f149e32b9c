package caddyupload

import "net/http"

// routeCompanion maps the Companion-compatible routes under /s3.
func routeCompanion(r *http.Request, seg []string) (operation, *apiError) {
	return operation{}, errNotFound()
}
