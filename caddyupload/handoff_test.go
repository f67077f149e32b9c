package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

const appSecret = "example-app-secret-0123456789"

// pythonApp runs examples/app/app.py, the README's application, as a real
// process; its state file outlives the process.
type pythonApp struct {
	url string
}

func startPythonApp(t *testing.T, port int, state string) *pythonApp {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 is required for the example application")
	}
	script, _ := filepath.Abs("../examples/app/app.py")
	p := realservers.StartT(t, "example-app", py, []string{script, "--port", fmt.Sprint(port), "--state", state}, []string{"UPLOAD_SECRET=" + appSecret})
	a := &pythonApp{url: "http://" + realservers.Addr(port)}
	if err := p.WaitReady(20*time.Second, func(ctx context.Context) error {
		_, err := a.get()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return a
}

type appEvents struct {
	Events map[string]struct {
		Type  string `json:"type"`
		Count int    `json:"count"`
	} `json:"events"`
	Deliveries int `json:"deliveries"`
}

func (a *pythonApp) get() (appEvents, error) {
	var st appEvents
	resp, err := http.Get(a.url + "/uploads")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func (a *pythonApp) fail(t *testing.T, on bool) {
	t.Helper()
	v := map[bool]string{true: "on", false: "off"}[on]
	resp, err := http.Post(a.url+"/control/fail", "text/plain", strings.NewReader(v))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// TestWebhooksSurviveAppOutageAndKill9: events are written with the status
// change, retried while the application answers 500, survive a kill -9 of
// Caddy, and reach the application once each when it recovers.
func TestWebhooksSurviveAppOutageAndKill9(t *testing.T) {
	appPort := realservers.FreePort(t)
	app := startPythonApp(t, appPort, filepath.Join(t.TempDir(), "state.json"))
	s := newSite(t)
	s.Upload = fmt.Sprintf(`webhook http://127.0.0.1:%d/webhooks/upload {
				secret {env.APP_SECRET}
				max_backoff 1s
				max_attempts 1000
			}`, appPort)
	env := "APP_SECRET=" + appSecret
	s.start(t, env)

	app.fail(t, true)
	confirmed := s.upload(t, "hello")
	aborted := s.create(t, "gone.txt", 4, "text/plain")
	if status, body := s.api(t, http.MethodDelete, "/"+aborted.ID, nil); status != http.StatusNoContent {
		t.Fatalf("abort: %d %s", status, body)
	}
	// Attempts are being made and refused.
	waitFor(t, "delivery attempts while the app fails", func() bool {
		st, err := app.get()
		return err == nil && st.Deliveries >= 3
	})

	s.proc.Kill()
	waitFor(t, "the embedded server to follow Caddy", func() bool { return len(embeddedServers(t, s.Dir+"/s3")) == 0 })
	app.fail(t, false)
	s.start(t, env)

	want := map[string]string{confirmed + ":upload.confirmed": "upload.confirmed", aborted.ID + ":upload.aborted": "upload.aborted"}
	waitFor(t, "both events delivered after the restart", func() bool {
		st, err := app.get()
		if err != nil {
			return false
		}
		for id := range want {
			if st.Events[id].Count == 0 {
				return false
			}
		}
		return true
	})
	// Give a duplicate the chance to show up, then check exactly once.
	time.Sleep(3 * time.Second)
	st, err := app.get()
	if err != nil {
		t.Fatal(err)
	}
	for id, typ := range want {
		if e := st.Events[id]; e.Count != 1 || e.Type != typ {
			t.Errorf("event %s: delivered %d times as %q, want once as %s", id, e.Count, e.Type, typ)
		}
	}
	if len(st.Events) != len(want) {
		t.Errorf("the app got %d distinct events, want %d: %v", len(st.Events), len(want), st.Events)
	}
}
