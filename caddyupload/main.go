// Command caddyupload is Caddy with the upload handler and its embedded
// S3-compatible server, so that uploads work with no cloud bucket at all.
package main

import (
	_ "time/tzdata"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// The standard Caddy modules, as in Caddy's own binary.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddyupload/caddyupload"
	_ "github.com/caddyupload/caddyupload/caddyupload/embedded"
)

func main() {
	caddycmd.Main()
}
