package caddyupload

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

// getHealth asks the admin endpoint for the health report and checks the
// answer's status.
func getHealth(t *testing.T, admin string, want int) healthReport {
	t.Helper()
	resp, err := noRedirect.Get(admin + "/upload/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("health: %d, want %d: %s", resp.StatusCode, want, body)
	}
	var rep healthReport
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("health body %s: %v", body, err)
	}
	return rep
}

// The health endpoint answers 200 while the ledger and the object store
// work, and 503 naming the store once the storage server is stopped; the
// ledger stays ok. Another method gets 405.
func TestHealthEndpoint(t *testing.T) {
	realservers.RealOnly(t, "a private S3 server that the test stops")
	srv := realservers.StartVersityGW(t)
	s := newSite(t, srv)
	adminPort := realservers.FreePort(t)
	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	s.load(strings.Replace(s.caddyfile("name healthy"), "admin off", fmt.Sprintf("admin 127.0.0.1:%d", adminPort), 1))

	// Positive control: everything works, and the route is listed.
	rep := getHealth(t, admin, http.StatusOK)
	if rep.Status != "ok" || len(rep.Ledgers) != 1 || len(rep.Stores) != 1 || len(rep.OIDC) != 0 {
		t.Fatalf("report %+v", rep)
	}
	for _, p := range append(rep.Ledgers, rep.Stores...) {
		if p.Status != "ok" || strings.Join(p.Routes, ",") != "healthy" {
			t.Errorf("part %+v", *p)
		}
	}
	if rep.Ledgers[0].Name != ledgerPath(s) {
		t.Errorf("ledger named %q, want %q", rep.Ledgers[0].Name, ledgerPath(s))
	}
	// The upload API works too: the report is not a guess.
	s.create("alice", "a.txt", 3, "text/plain")

	resp, err := noRedirect.Post(admin+"/upload/health", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") == "" {
		t.Errorf("POST: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}

	srv.Process.Stop(5 * time.Second)
	start := time.Now()
	rep = getHealth(t, admin, http.StatusServiceUnavailable)
	if time.Since(start) > healthTimeout+2*time.Second {
		t.Errorf("the report took %v", time.Since(start))
	}
	if rep.Status != "down" || rep.Stores[0].Status != "down" || rep.Stores[0].Error == "" {
		t.Errorf("stores %+v", *rep.Stores[0])
	}
	if rep.Ledgers[0].Status != "ok" {
		t.Errorf("the ledger is reported down with the store: %+v", *rep.Ledgers[0])
	}
}
