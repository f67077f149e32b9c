package realservers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// ExampleApp is examples/app/app.py, the application of the README,
// running as a real process: it records forwarded completions and webhook
// events, verifying their signatures with Secret.
type ExampleApp struct {
	URL    string
	Port   int
	Secret string
}

// ExampleAppState is what the app recorded.
type ExampleAppState struct {
	Uploads map[string]struct {
		Key      string `json:"key"`
		Size     int64  `json:"size"`
		Type     string `json:"type"`
		Subject  string `json:"subject"`
		Filename string `json:"filename"`
	} `json:"uploads"`
	Events map[string]struct {
		Type  string `json:"type"`
		Count int    `json:"count"`
	} `json:"events"`
	// Deliveries counts every request the app answered, refused or not.
	Deliveries int `json:"deliveries"`
}

// StartExampleApp starts the app on port (0 = a free one) keeping its
// state in the file state, and stops it when the test ends.
func StartExampleApp(t testing.TB, port int, state, secret string) *ExampleApp {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 is required for the example application")
	}
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "examples", "app", "app.py")
	if port == 0 {
		port = FreePort(t)
	}
	p := StartT(t, "example-app", py, []string{script, "--port", fmt.Sprint(port), "--state", state}, []string{"UPLOAD_SECRET=" + secret})
	a := &ExampleApp{URL: "http://" + Addr(port), Port: port, Secret: secret}
	if err := p.WaitReady(20*time.Second, func(ctx context.Context) error {
		_, err := a.State()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return a
}

// State reads what the app recorded.
func (a *ExampleApp) State() (ExampleAppState, error) {
	var st ExampleAppState
	resp, err := http.Get(a.URL + "/uploads")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// Fail makes the app answer 500 to every delivery (on) or accept them.
func (a *ExampleApp) Fail(t testing.TB, on bool) {
	t.Helper()
	v := map[bool]string{true: "on", false: "off"}[on]
	resp, err := http.Post(a.URL+"/control/fail", "text/plain", strings.NewReader(v))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}
