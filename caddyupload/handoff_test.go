package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

const appSecret = "example-app-secret-0123456789"

// TestWebhooksSurviveAppOutageAndKill9: events are written with the status
// change, retried while the application answers 500, survive a kill -9 of
// Caddy, and reach the application once each when it recovers.
func TestWebhooksSurviveAppOutageAndKill9(t *testing.T) {
	appPort := realservers.FreePort(t)
	app := realservers.StartExampleApp(t, appPort, filepath.Join(t.TempDir(), "state.json"), appSecret)
	s := newSite(t)
	s.Upload = fmt.Sprintf(`webhook http://127.0.0.1:%d/webhooks/upload {
				secret {env.APP_SECRET}
				max_backoff 1s
				max_attempts 1000
			}`, appPort)
	env := "APP_SECRET=" + appSecret
	s.start(t, env)

	app.Fail(t, true)
	confirmed := s.upload(t, "hello")
	aborted := s.create(t, "gone.txt", 4, "text/plain")
	if status, body := s.api(t, http.MethodDelete, "/"+aborted.ID, nil); status != http.StatusNoContent {
		t.Fatalf("abort: %d %s", status, body)
	}
	// Attempts are being made and refused.
	waitFor(t, "delivery attempts while the app fails", func() bool {
		st, err := app.State()
		return err == nil && st.Deliveries >= 3
	})

	s.proc.Kill()
	waitFor(t, "the embedded server to follow Caddy", func() bool { return len(embeddedServers(t, s.Dir+"/s3")) == 0 })
	app.Fail(t, false)
	s.start(t, env)

	want := map[string]string{confirmed + ":upload.confirmed": "upload.confirmed", aborted.ID + ":upload.aborted": "upload.aborted"}
	waitFor(t, "both events delivered after the restart", func() bool {
		st, err := app.State()
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
	st, err := app.State()
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
