package caddyupload

import (
	"context"
	"fmt"
	"mime"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddyupload/caddyupload/client"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "upload",
		Usage: "put <file> <route-url> [--token <jwt>] [--user <name:password>] ... | cors --bucket <b> --origin <o> [--apply] | ls | show <id> | abort <id> | purge --older-than <d>",
		Short: "Uploads a file through an upload route, checks a bucket's CORS, or manages upload records",
		Long: `
Uploads a file the way a browser does: it asks the upload route for a
presigned request, sends the bytes straight to object storage (large files
in parts, several at once) and completes the upload. The route URL is where
the upload handler is mounted, e.g. https://example.com/uploads.

Credentials: --token sends a bearer token (or set CADDYUPLOAD_TOKEN);
--user sends HTTP basic credentials.

"upload cors" checks (and with --apply sets) the bucket CORS rule that
browsers need to upload straight to a bucket from your site.

"upload ls", "show", "abort" and "purge" find, inspect, abort and purge the
upload records of a running Caddy through its admin API (--address, or the
admin address of --config; default $CADDY_ADMIN or localhost:2019); "upload
usage" shows a subject's usage of a route against its quota.`,
		CobraFunc: func(cmd *cobra.Command) {
			put := &cobra.Command{
				Use:   "put <file> <route-url>",
				Short: "Uploads one file",
				Args:  cobra.ExactArgs(2),
				RunE:  runUploadPut,
			}
			put.Flags().String("token", "", "bearer token (default $CADDYUPLOAD_TOKEN)")
			put.Flags().String("user", "", "basic auth credentials, name:password")
			put.Flags().String("type", "", "media type (default: from the file extension)")
			put.Flags().Int("concurrency", 4, "parts sent at once")
			put.Flags().Bool("quiet", false, "print only the record")
			cmd.AddCommand(put, corsCommand())
			cmd.AddCommand(adminCommands()...)
			cmd.AddCommand(migrateCommand())
		},
	})
}

func runUploadPut(cmd *cobra.Command, args []string) error {
	path, base := args[0], args[1]
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	typ, _ := cmd.Flags().GetString("type")
	if typ == "" {
		typ = mime.TypeByExtension(filepath.Ext(path))
		if typ == "" {
			typ = "application/octet-stream"
		}
	}
	c := &client.Client{Base: base}
	c.Concurrency, _ = cmd.Flags().GetInt("concurrency")
	token, _ := cmd.Flags().GetString("token")
	if token == "" {
		token = os.Getenv("CADDYUPLOAD_TOKEN")
	}
	if user, _ := cmd.Flags().GetString("user"); user != "" {
		name, pw, _ := strings.Cut(user, ":")
		c.Auth = client.Basic(name, pw)
	} else if token != "" {
		c.Auth = client.Bearer(token)
	}
	quiet, _ := cmd.Flags().GetBool("quiet")
	start := time.Now()
	if !quiet {
		last := time.Time{}
		c.Progress = func(sent, total int64) {
			if time.Since(last) > 500*time.Millisecond || sent == total {
				last = time.Now()
				fmt.Fprintf(os.Stderr, "\r%s: %d / %d bytes (%.0f%%)", filepath.Base(path), sent, total, 100*float64(sent)/float64(max(total, 1)))
			}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rec, err := c.Upload(ctx, client.File{Name: filepath.Base(path), Type: typ, Size: info.Size(), Body: f})
	if !quiet {
		fmt.Fprintln(os.Stderr)
	}
	if err != nil {
		return err
	}
	if !quiet {
		secs := time.Since(start).Seconds()
		fmt.Fprintf(os.Stderr, "confirmed in %.1fs (%.1f MB/s)\n", secs, float64(rec.Size)/1e6/max(secs, 1e-9))
	}
	fmt.Printf("{\"id\":%q,\"key\":%q,\"status\":%q,\"size\":%d}\n", rec.ID, rec.Key, rec.Status, rec.Size)
	return nil
}
