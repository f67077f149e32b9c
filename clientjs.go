package caddyupload

import (
	_ "embed"
	"net/http"
)

// clientJS is the dependency-free browser client, served by every upload
// route at GET {base}/client.js so that pages need no build step.
//
//go:embed client/caddyupload.js
var clientJS []byte

func serveClientJS(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("X-Content-Type-Options", "nosniff")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(clientJS)
}
