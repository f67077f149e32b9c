package embedded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"github.com/versity/versitygw/backend/posix"
	"github.com/versity/versitygw/embedgw"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "embedded-s3",
		Usage: "--listen <addr> --data-dir <dir> [--region <region>] [--health <path>]",
		Short: "Runs the embedded S3-compatible server (started by Caddy itself)",
		Long: `
Runs the S3-compatible server of the embedded_s3 app in the foreground. Caddy
starts it as a child process; it is not meant to be run by hand. The root
credentials come from the environment variables
CADDYUPLOAD_EMBEDDED_S3_ACCESS_KEY_ID and CADDYUPLOAD_EMBEDDED_S3_SECRET_ACCESS_KEY.
It exits on SIGTERM or SIGINT, or when its standard input closes.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Hidden = true
			cmd.Flags().String("listen", defaultListen, "TCP address to listen on")
			cmd.Flags().String("data-dir", "", "directory that holds the buckets")
			cmd.Flags().String("region", defaultRegion, "region requests are signed for")
			cmd.Flags().String("health", healthPath, "unauthenticated health check path")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdEmbeddedS3)
		},
	})
}

func cmdEmbeddedS3(fl caddycmd.Flags) (int, error) {
	dataDir := fl.String("data-dir")
	if dataDir == "" {
		return caddy.ExitCodeFailedStartup, errors.New("--data-dir is required")
	}
	access, secret := os.Getenv(envAccessKeyID), os.Getenv(envSecretAccessKey)
	if access == "" || secret == "" {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("%s and %s must be set", envAccessKeyID, envSecretAccessKey)
	}
	// Nothing this process might start needs them.
	_ = os.Unsetenv(envAccessKeyID)
	_ = os.Unsetenv(envSecretAccessKey)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// Standard input is a pipe from Caddy: EOF means Caddy is gone.
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()

	ms, sidecar, err := metadataStore(dataDir)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	opts := posix.PosixOpts{SideCarDir: sidecar}
	// Uploads are private to the site: Caddy's user only.
	opts.SetNewDirPerm(0o700)
	opts.SetNewFilePerm(0o600)
	// posix.New changes this process's working directory to dataDir.
	be, err := posix.New(dataDir, ms, opts)
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("posix backend: %v", err)
	}
	err = embedgw.RunVersityGW(ctx, be, &embedgw.Config{
		RootUserAccess: access,
		RootUserSecret: secret,
		Region:         fl.String("region"),
		Ports:          []string{fl.String("listen")},
		// versitygw's own defaults.
		MaxConnections:    250000,
		MaxRequests:       100000,
		MultipartMaxParts: 10000,
		// Caddy's access log covers the requests.
		Quiet:      true,
		KeepAlive:  true,
		HealthPath: fl.String("health"),
	})
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	return 0, nil
}
