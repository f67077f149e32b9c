package caddyupload

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/caddyupload/caddyupload/storage/s3store"
)

// corsProblems says what keeps browsers at origin from uploading to a
// bucket with these rules; none means the rules are enough.
func corsProblems(rules []s3store.CORSRule, origin string) []string {
	need := s3store.UploadCORS([]string{origin})
	for _, r := range rules {
		if !matchesOrigin(r.AllowedOrigins, origin) {
			continue
		}
		var problems []string
		for _, m := range need.AllowedMethods {
			if !slices.ContainsFunc(r.AllowedMethods, func(x string) bool { return strings.EqualFold(x, m) }) {
				problems = append(problems, "method "+m+" is not allowed")
			}
		}
		if !slices.Contains(r.AllowedHeaders, "*") {
			problems = append(problems, `allowed headers must be "*" (presigned requests send signed headers)`)
		}
		if !slices.ContainsFunc(r.ExposeHeaders, func(x string) bool { return strings.EqualFold(x, "ETag") }) {
			problems = append(problems, "ETag is not exposed (multipart uploads read it)")
		}
		if len(problems) == 0 {
			return nil
		}
		return problems
	}
	return []string{"no CORS rule allows origin " + origin}
}

func matchesOrigin(allowed []string, origin string) bool {
	for _, a := range allowed {
		if a == "*" || strings.EqualFold(a, origin) {
			return true
		}
		if pre, suf, ok := strings.Cut(a, "*"); ok && strings.HasPrefix(origin, pre) && strings.HasSuffix(origin, suf) {
			return true
		}
	}
	return false
}

// corsCommand is `caddy upload cors`: check, and with --apply set, the
// bucket CORS rule browsers need.
func corsCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "cors --bucket <bucket> --origin <origin> [--endpoint <url>] [--region <region>] [--apply]",
		Short: "Checks (or applies) the bucket CORS rule browsers need to upload",
		Long: `
Checks that browsers at --origin may upload straight to the bucket: PUT,
POST, GET and HEAD allowed, any request header, ETag exposed. With --apply,
replaces the bucket's CORS configuration with that rule. Credentials come
from S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY, or the AWS SDK's default
chain. Exits 1 when the rule is missing and --apply is not set.`,
		Args: cobra.NoArgs,
		RunE: runCORS,
	}
	c.Flags().String("bucket", "", "bucket name (required)")
	c.Flags().StringSlice("origin", nil, "site origin, e.g. https://example.com (repeatable; required)")
	c.Flags().String("endpoint", "", "S3 API endpoint (default AWS)")
	c.Flags().String("region", "", "region (default us-east-1; auto for R2)")
	c.Flags().Bool("path-style", false, "address the bucket path-style")
	c.Flags().Bool("apply", false, "replace the bucket's CORS configuration with the upload rule")
	return c
}

func runCORS(cmd *cobra.Command, _ []string) error {
	bucket, _ := cmd.Flags().GetString("bucket")
	origins, _ := cmd.Flags().GetStringSlice("origin")
	if bucket == "" || len(origins) == 0 {
		return fmt.Errorf("--bucket and --origin are required")
	}
	endpoint, _ := cmd.Flags().GetString("endpoint")
	region, _ := cmd.Flags().GetString("region")
	pathStyle, _ := cmd.Flags().GetBool("path-style")
	apply, _ := cmd.Flags().GetBool("apply")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := s3store.New(ctx, s3store.Config{
		Endpoint: endpoint, Region: region, Bucket: bucket, UsePathStyle: pathStyle,
		AccessKeyID: os.Getenv("S3_ACCESS_KEY_ID"), SecretAccessKey: os.Getenv("S3_SECRET_ACCESS_KEY"),
	})
	if err != nil {
		return err
	}
	rules, err := store.CORS(ctx)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	missing := false
	for _, o := range origins {
		problems := corsProblems(rules, o)
		for _, p := range problems {
			fmt.Fprintf(out, "%s: %s\n", o, p)
		}
		missing = missing || len(problems) > 0
	}
	if !missing {
		fmt.Fprintln(out, "ok: browsers at", strings.Join(origins, ", "), "can upload to", bucket)
		return nil
	}
	if !apply {
		return fmt.Errorf("the bucket's CORS rules are not enough; run again with --apply to set them")
	}
	if err := store.PutCORS(ctx, origins); err != nil {
		return err
	}
	fmt.Fprintln(out, "applied: PUT, POST, GET, HEAD from", strings.Join(origins, ", "), "with any header and ETag exposed")
	return nil
}
