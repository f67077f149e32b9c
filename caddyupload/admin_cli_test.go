package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

// caddyUpload runs `caddyupload upload args...` with env added and returns
// its stdout, its stderr and whether it succeeded.
func caddyUpload(t *testing.T, env []string, args ...string) (string, string, bool) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"upload"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), err == nil
}

// mustUpload is caddyUpload that fails the test when the command does.
func mustUpload(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, ok := caddyUpload(t, nil, args...)
	if !ok {
		t.Fatalf("caddyupload upload %s failed:\n%s%s", strings.Join(args, " "), out, errOut)
	}
	return out
}

type cliListing struct {
	Records []struct {
		ID      string `json:"id"`
		Key     string `json:"key"`
		Status  string `json:"status"`
		Route   string `json:"route"`
		Subject string `json:"subject"`
		Reason  string `json:"reason"`
	} `json:"records"`
	Next string `json:"next"`
}

func listJSON(t *testing.T, args ...string) cliListing {
	t.Helper()
	out := mustUpload(t, append([]string{"ls", "--json"}, args...)...)
	var l cliListing
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("ls --json printed %q: %v", out, err)
	}
	return l
}

func statusOf(l cliListing, id string) string {
	for _, r := range l.Records {
		if r.ID == id {
			return r.Status
		}
	}
	return ""
}

// The upload ls, show, abort and purge commands work against a running
// Caddy through its admin API, found by --address, by --config or by
// $CADDY_ADMIN, and print a table or, with --json, the API's answer.
func TestAdminCommands(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	s.Upload = "name notes"
	s.start(t)
	addr := "--address=" + realservers.Addr(s.Admin)

	confirmed := s.upload(t, "kept")
	pending := []created{s.create(t, "a.txt", 3, "text/plain"), s.create(t, "b.txt", 3, "text/plain"), s.create(t, "c.txt", 3, "text/plain")}
	if status, body := put(t, pending[0], []byte("abc"), ""); status != http.StatusOK {
		t.Fatalf("PUT: %d %s", status, body)
	}

	// ls: a table by default, JSON for scripts; every page with --all.
	table := mustUpload(t, "ls", addr)
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[0], "STATUS") {
		t.Fatalf("ls printed:\n%s", table)
	}
	for _, id := range []string{confirmed, pending[0].ID, pending[1].ID, pending[2].ID} {
		if !strings.Contains(table, id) {
			t.Errorf("ls lacks %s:\n%s", id, table)
		}
	}
	if l := listJSON(t, addr); len(l.Records) != 4 || l.Next != "" || l.Records[0].Route != "notes" || l.Records[0].Subject != user {
		t.Errorf("ls --json: %+v", l)
	}
	out, errOut, ok := caddyUpload(t, nil, "ls", addr, "--limit=1")
	if !ok || strings.Count(strings.TrimSpace(out), "\n") != 1 || !strings.Contains(errOut, "--after") {
		t.Errorf("ls --limit=1: ok %v\n%s%s", ok, out, errOut)
	}
	var seen []string
	for _, r := range listJSON(t, addr, "--limit=1", "--all").Records {
		seen = append(seen, r.ID)
	}
	slices.Sort(seen)
	if len(slices.Compact(seen)) != 4 {
		t.Errorf("ls --limit=1 --all listed %v", seen)
	}
	if l := listJSON(t, addr, "--status=confirmed"); len(l.Records) != 1 || l.Records[0].ID != confirmed {
		t.Errorf("ls --status=confirmed: %+v", l)
	}

	// The admin address from the config file, and from $CADDY_ADMIN.
	if l := listJSON(t, "--config", filepath.Join(s.Dir, "Caddyfile")); len(l.Records) != 4 {
		t.Errorf("ls --config: %+v", l)
	}
	out, errOut, ok = caddyUpload(t, []string{"CADDY_ADMIN=" + realservers.Addr(s.Admin)}, "ls", "--json")
	if !ok || !strings.Contains(out, confirmed) {
		t.Errorf("ls with CADDY_ADMIN: ok %v\n%s%s", ok, out, errOut)
	}
	// Control for both: no address and no config reach no Caddy.
	if out, errOut, ok := caddyUpload(t, []string{"CADDY_ADMIN=127.0.0.1:1"}, "ls"); ok {
		t.Errorf("ls reached a Caddy at 127.0.0.1:1:\n%s%s", out, errOut)
	}

	// show: one field a line, or the JSON record.
	shown := mustUpload(t, "show", addr, confirmed)
	for _, want := range []string{"id ", confirmed, "status ", "confirmed", "route ", "notes", "subject ", user, "etag "} {
		if !strings.Contains(shown, want) {
			t.Errorf("show lacks %q:\n%s", want, shown)
		}
	}
	if strings.Contains(shown, "X-Amz-") {
		t.Errorf("show prints a presigned URL:\n%s", shown)
	}
	var rec struct {
		ID, Status, Kind string
	}
	if err := json.Unmarshal([]byte(mustUpload(t, "show", addr, "--json", pending[0].ID)), &rec); err != nil || rec.ID != pending[0].ID || rec.Status != "pending" || rec.Kind != "PUT" {
		t.Errorf("show --json: %+v %v", rec, err)
	}
	if out, errOut, ok := caddyUpload(t, nil, "show", addr, strings.Repeat("a", 42)); ok || !strings.Contains(errOut, "404") {
		t.Errorf("show of an unknown id: ok %v\n%s%s", ok, out, errOut)
	}

	// abort one upload: its record is aborted; the others are not.
	out = mustUpload(t, "abort", addr, pending[0].ID)
	if !strings.Contains(out, "aborted") {
		t.Errorf("abort printed:\n%s", out)
	}
	if status, body := s.api(t, http.MethodGet, "/"+pending[0].ID, nil); status != http.StatusOK || !strings.Contains(string(body), `"status":"aborted"`) {
		t.Errorf("the owner sees %d %s", status, body)
	}
	l := listJSON(t, addr)
	if statusOf(l, pending[1].ID) != "pending" || statusOf(l, confirmed) != "confirmed" {
		t.Errorf("abort touched another upload: %+v", l)
	}
	if _, _, ok := caddyUpload(t, nil, "abort", addr); ok {
		t.Error("abort with neither an id nor --subject succeeded")
	}

	// abort every pending upload of a subject.
	out = mustUpload(t, "abort", addr, "--subject", user)
	if !strings.Contains(out, "aborted 2 pending uploads of "+user) {
		t.Errorf("abort --subject printed:\n%s", out)
	}
	if l := listJSON(t, addr, "--status=pending"); len(l.Records) != 0 {
		t.Errorf("pending after abort --subject: %+v", l)
	}

	// purge: the confirmed record goes (its object stays); the aborted
	// ones wait for the sweeper's last deletion of their objects.
	if _, errOut, ok := caddyUpload(t, nil, "purge", addr); ok || !strings.Contains(errOut, "--older-than") {
		t.Errorf("purge without --older-than: ok %v %s", ok, errOut)
	}
	if out := mustUpload(t, "purge", addr, "--older-than=1h"); !strings.Contains(out, "purged 0 records") {
		t.Errorf("purge --older-than=1h printed:\n%s", out)
	}
	var n struct{ Purged, Waiting int }
	if err := json.Unmarshal([]byte(mustUpload(t, "purge", addr, "--older-than=0s", "--json")), &n); err != nil || n.Purged != 1 || n.Waiting != 3 {
		t.Errorf("purge --json: %+v %v", n, err)
	}
	l = listJSON(t, addr)
	if len(l.Records) != 3 || statusOf(l, confirmed) != "" {
		t.Errorf("after the purge: %+v", l)
	}
}

// TestUsageCommand: `caddy upload usage` shows a subject's usage of a
// route against its quota, as the table and as JSON; an unknown route is
// an error.
func TestUsageCommand(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	s.Upload = "name notes\n\t\t\tquota {\n\t\t\t\tpending 5\n\t\t\t\tuploads 10 per 24h\n\t\t\t}"
	s.start(t)
	addr := "--address=" + realservers.Addr(s.Admin)
	s.upload(t, "kept")
	s.create(t, "a.txt", 3, "text/plain")
	s.create(t, "b.txt", 3, "text/plain")

	table := mustUpload(t, "usage", addr, "--route=notes", "--subject="+user)
	if !regexp.MustCompile(`(?m)^pending\s+2\s+5\s+in all$`).MatchString(table) || !regexp.MustCompile(`(?m)^uploads\s+3\s+10\s+24h0m0s$`).MatchString(table) {
		t.Errorf("usage printed:\n%s", table)
	}
	var u struct {
		Route   string `json:"route"`
		Pending struct {
			Used  int64 `json:"used"`
			Limit int64 `json:"limit"`
		} `json:"pending"`
	}
	if err := json.Unmarshal([]byte(mustUpload(t, "usage", addr, "--route=notes", "--subject="+user, "--json")), &u); err != nil || u.Route != "notes" || u.Pending.Used != 2 || u.Pending.Limit != 5 {
		t.Errorf("usage --json: %+v %v", u, err)
	}
	// Another subject holds nothing; an unknown route is refused.
	if other := mustUpload(t, "usage", addr, "--route=notes", "--subject=nobody"); !regexp.MustCompile(`(?m)^pending\s+0\s+5`).MatchString(other) {
		t.Errorf("usage of another subject:\n%s", other)
	}
	if out, errOut, ok := caddyUpload(t, nil, "usage", addr, "--route=nope", "--subject="+user); ok {
		t.Errorf("usage of an unknown route succeeded:\n%s%s", out, errOut)
	}
}
