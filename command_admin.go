package caddyupload

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// adminCommands are `caddy upload ls|show|abort|purge`: they run in
// another process than the server and reach its records through the admin
// API (admin_records.go), found the way `caddy stop` finds it.
func adminCommands() []*cobra.Command {
	ls := &cobra.Command{
		Use:   "ls [--route <name>] [--subject <s>] [--status <status>] [--older-than <duration>]",
		Short: "Lists upload records, newest first",
		Long: `
Lists the upload records of the running routes, newest first, a page at a
time (--limit, --after <cursor> for the next; --all follows every page).
--older-than takes a duration such as 30d or 12h: records created before
that long ago.`,
		Args: cobra.NoArgs,
		RunE: runUploadList,
	}
	ls.Flags().String("route", "", "only records of this route (its name)")
	ls.Flags().String("subject", "", "only records of this subject")
	ls.Flags().String("status", "", "only records in this status: pending, confirmed, aborted, expired or rejected")
	ls.Flags().String("older-than", "", "only records created more than this long ago (e.g. 30d)")
	ls.Flags().Int("limit", 100, "records per page (1 to 1000)")
	ls.Flags().String("after", "", "the cursor of the page to list (printed after a full page)")
	ls.Flags().Bool("all", false, "list every page")

	show := &cobra.Command{
		Use:   "show <id>",
		Short: "Shows one upload record",
		Args:  cobra.ExactArgs(1),
		RunE:  runUploadShow,
	}

	abort := &cobra.Command{
		Use:   "abort <id> | abort --subject <s> [--route <name>]",
		Short: "Aborts an upload, or every pending upload of a subject",
		Long: `
Aborts one upload as its owner's DELETE does: the record is marked aborted,
then its object (or multipart upload) is deleted. A confirmed upload is
aborted too: its object is taken down. With --subject instead of an id,
aborts every pending upload of that subject (on --route only, if given).`,
		Args: cobra.MaximumNArgs(1),
		RunE: runUploadAbort,
	}
	abort.Flags().String("subject", "", "abort every pending upload of this subject")
	abort.Flags().String("route", "", "with --subject: only on this route")

	purge := &cobra.Command{
		Use:   "purge --older-than <duration> [--route <name>] [--status <status>] [--subject <s>]",
		Short: "Deletes the records of ended uploads",
		Long: `
Deletes the records of uploads that ended (confirmed, aborted, expired,
rejected) and were created more than --older-than ago (0s: any age). It
never deletes a pending record, and never an object: a confirmed upload's
object stays with the application. Run "caddy upload ls" with the same
filters first to see what it would delete.`,
		Args: cobra.NoArgs,
		RunE: runUploadPurge,
	}
	purge.Flags().String("older-than", "", "required: only records created more than this long ago (e.g. 30d; 0s for any age)")
	purge.Flags().String("route", "", "only records of this route")
	purge.Flags().String("status", "", "only records in this status: confirmed, aborted, expired or rejected")
	purge.Flags().String("subject", "", "only records of this subject")

	usage := &cobra.Command{
		Use:   "usage --route <name> --subject <s> [--source <source>]",
		Short: "Shows a subject's usage of a route against its quota",
		Long: `
Shows what a subject holds on a route (pending uploads and bytes, uploads
and bytes counted against the route's quota, the create rate left) and the
route's limits. --source picks the identity source when the subject could
come from several (default: the route's own).`,
		Args: cobra.NoArgs,
		RunE: runUploadUsage,
	}
	usage.Flags().String("route", "", "required: the route (its name)")
	usage.Flags().String("subject", "", "required: the subject")
	usage.Flags().String("source", "", "the identity source (default: the route's)")

	cmds := []*cobra.Command{ls, show, abort, purge, usage}
	for _, c := range cmds {
		c.Flags().String("address", "", "the admin API's address (default: from --config, else $CADDY_ADMIN or localhost:2019)")
		c.Flags().StringP("config", "c", "", "the Caddy config to read the admin address from, if --address is not given")
		c.Flags().String("adapter", "", "the adapter of --config")
		c.Flags().Bool("json", false, "print the admin API's JSON answer")
	}
	return cmds
}

// adminCall sends one request to the admin API of the Caddy that cmd's
// flags name and returns the answer's body.
func adminCall(cmd *cobra.Command, method, path string, query url.Values) ([]byte, error) {
	address, _ := cmd.Flags().GetString("address")
	config, _ := cmd.Flags().GetString("config")
	adapter, _ := cmd.Flags().GetString("adapter")
	addr, err := caddycmd.DetermineAdminAPIAddress(address, nil, config, adapter)
	if err != nil {
		return nil, fmt.Errorf("finding the admin API: %v", err)
	}
	uri := path
	if len(query) > 0 {
		uri += "?" + query.Encode()
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, uri, nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// queryFlags copies the named string flags that are set into a query, as
// the parameter of the same name with "-" for "_".
func queryFlags(cmd *cobra.Command, names ...string) url.Values {
	q := url.Values{}
	for _, n := range names {
		if v, _ := cmd.Flags().GetString(n); v != "" {
			q.Set(strings.ReplaceAll(n, "-", "_"), v)
		}
	}
	return q
}

func jsonOutput(cmd *cobra.Command) bool {
	b, _ := cmd.Flags().GetBool("json")
	return b
}

// cliRecord is what the commands print of a record.
type cliRecord struct {
	ID          string     `json:"id"`
	Key         string     `json:"key"`
	Status      string     `json:"status"`
	Size        int64      `json:"size"`
	Route       string     `json:"route"`
	Subject     string     `json:"subject"`
	CreatedAt   time.Time  `json:"created_at"`
	ConfirmedAt *time.Time `json:"confirmed_at"`
}

func runUploadList(cmd *cobra.Command, _ []string) error {
	q := queryFlags(cmd, "route", "subject", "status", "older-than", "after")
	limit, _ := cmd.Flags().GetInt("limit")
	q.Set("limit", fmt.Sprint(limit))
	all, _ := cmd.Flags().GetBool("all")
	var records []json.RawMessage
	next := ""
	for {
		body, err := adminCall(cmd, http.MethodGet, "/upload/records", q)
		if err != nil {
			return err
		}
		var page struct {
			Records []json.RawMessage `json:"records"`
			Next    string            `json:"next"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return fmt.Errorf("reading the admin API's answer: %v", err)
		}
		records = append(records, page.Records...)
		next = page.Next
		if !all || next == "" {
			break
		}
		q.Set("after", next)
	}
	if records == nil {
		records = []json.RawMessage{}
	}
	if jsonOutput(cmd) {
		return printJSON(cmd.OutOrStdout(), struct {
			Records []json.RawMessage `json:"records"`
			Next    string            `json:"next,omitempty"`
		}{records, next})
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROUTE\tSUBJECT\tSTATUS\tSIZE\tCREATED\tKEY")
	for _, raw := range records {
		var r cliRecord
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("reading the admin API's answer: %v", err)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.ID, r.Route, r.Subject, r.Status, r.Size, r.CreatedAt.UTC().Format(time.RFC3339), r.Key)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if next != "" {
		fmt.Fprintf(cmd.ErrOrStderr(), "more records: add --after %s (or --all)\n", next)
	}
	return nil
}

// showOrder is the order show prints a record's fields in; others follow
// by name.
var showOrder = []string{"id", "status", "route", "subject", "source", "key", "filename", "size", "type", "sha256",
	"kind", "store", "ledger", "created_at", "confirmed_at", "updated_at", "expires_at", "reason", "etag", "part_size", "part_count", "metadata"}

func runUploadShow(cmd *cobra.Command, args []string) error {
	body, err := adminCall(cmd, http.MethodGet, "/upload/records/"+url.PathEscape(args[0]), nil)
	if err != nil {
		return err
	}
	return printRecord(cmd, body)
}

// printRecord prints a record answer: as is with --json, else one field
// a line.
func printRecord(cmd *cobra.Command, body []byte) error {
	if jsonOutput(cmd) {
		_, err := cmd.OutOrStdout().Write(body)
		return err
	}
	var fields map[string]any
	if err := json.Unmarshal(body, &fields); err != nil {
		return fmt.Errorf("reading the admin API's answer: %v", err)
	}
	var rest []string
	for k := range fields {
		if !slices.Contains(showOrder, k) {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	for _, k := range append(showOrder[:len(showOrder):len(showOrder)], rest...) {
		v, ok := fields[k]
		if !ok {
			continue
		}
		switch v := v.(type) {
		case string:
			fmt.Fprintf(tw, "%s\t%s\n", k, v)
		case float64:
			fmt.Fprintf(tw, "%s\t%.0f\n", k, v)
		default:
			b, _ := json.Marshal(v)
			fmt.Fprintf(tw, "%s\t%s\n", k, b)
		}
	}
	return tw.Flush()
}

func runUploadAbort(cmd *cobra.Command, args []string) error {
	subject, _ := cmd.Flags().GetString("subject")
	route, _ := cmd.Flags().GetString("route")
	switch {
	case len(args) == 1 && (subject != "" || route != ""):
		return fmt.Errorf("give an upload id, or --subject (and --route), not both")
	case len(args) == 1:
		body, err := adminCall(cmd, http.MethodPost, "/upload/records/"+url.PathEscape(args[0])+"/abort", nil)
		if err != nil {
			return err
		}
		return printRecord(cmd, body)
	case subject == "":
		return fmt.Errorf("give an upload id, or --subject to abort every pending upload of a subject")
	}
	var n struct {
		Aborted int `json:"aborted"`
		Skipped int `json:"skipped"`
	}
	if printed, err := adminAnswer(cmd, http.MethodPost, "/upload/records/abort", queryFlags(cmd, "subject", "route"), &n); printed || err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "aborted %d pending uploads of %s\n", n.Aborted, subject)
	if n.Skipped > 0 {
		fmt.Fprintf(cmd.OutOrStdout(), "skipped %d of routes not running in this Caddy\n", n.Skipped)
	}
	return nil
}

func runUploadPurge(cmd *cobra.Command, _ []string) error {
	q := queryFlags(cmd, "older-than", "route", "status", "subject")
	if q.Get("older_than") == "" {
		return fmt.Errorf("--older-than is required (e.g. 30d; 0s for records of any age)")
	}
	var n struct {
		Purged  int `json:"purged"`
		Waiting int `json:"waiting"`
	}
	if printed, err := adminAnswer(cmd, http.MethodPost, "/upload/records/purge", q, &n); printed || err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "purged %d records\n", n.Purged)
	if n.Waiting > 0 {
		fmt.Fprintf(cmd.OutOrStdout(), "kept %d whose upload URL may still write: the sweeper deletes their objects once more first; purge again later\n", n.Waiting)
	}
	return nil
}

// adminAnswer calls the admin API; with --json it prints the answer as is
// (printed), else it decodes it into v for the caller to print.
func adminAnswer(cmd *cobra.Command, method, path string, q url.Values, v any) (printed bool, err error) {
	body, err := adminCall(cmd, method, path, q)
	if err != nil {
		return false, err
	}
	if jsonOutput(cmd) {
		_, err := cmd.OutOrStdout().Write(body)
		return true, err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return false, fmt.Errorf("reading the admin API's answer: %v", err)
	}
	return false, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func runUploadUsage(cmd *cobra.Command, _ []string) error {
	q := queryFlags(cmd, "route", "subject", "source")
	if q.Get("route") == "" || q.Get("subject") == "" {
		return fmt.Errorf("--route and --subject are required")
	}
	var u adminUsage
	if printed, err := adminAnswer(cmd, http.MethodGet, usagePath, q, &u); printed || err != nil {
		return err
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "route\t%s\nsubject\t%s\nsource\t%s\n\nLIMIT\tUSED\tOF\tWINDOW\n", u.Route, u.Subject, u.Source)
	for _, e := range []struct {
		name string
		e    usageEntry
	}{{"pending", u.Pending}, {"pending_bytes", u.PendingBytes}, {"uploads", u.Uploads}, {"bytes", u.Bytes}} {
		of, window := "-", "in all"
		if e.e.Limit != nil {
			of = fmt.Sprint(*e.e.Limit)
		}
		if e.e.WindowSeconds > 0 {
			window = (time.Duration(e.e.WindowSeconds) * time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", e.name, e.e.Used, of, window)
	}
	if u.Rate != nil {
		fmt.Fprintf(tw, "rate\t%d left\t%d per %s (burst %d)\t\n", u.Rate.Remaining, u.Rate.Limit, time.Duration(u.Rate.WindowSeconds)*time.Second, u.Rate.Burst)
	}
	return tw.Flush()
}
