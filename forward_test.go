package caddyupload

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

const appSecret = "example-app-secret-0123456789"

func TestForwardToTheApplication(t *testing.T) {
	app := realservers.StartExampleApp(t, 0, filepath.Join(t.TempDir(), "state.json"), appSecret)
	t.Setenv("CU_TEST_APP_SECRET", appSecret)
	s := newSite(t, oneServer(t))
	s.load(s.caddyfileWith("forward /uploads/confirmed {\n secret {env.CU_TEST_APP_SECRET}\n }", "reverse_proxy "+app.URL))

	body := []byte("forwarded bytes")
	c := s.create("alice", "Résumé final.txt", int64(len(body)), "text/plain")
	if st := s.put(c, body, nil); st != 200 {
		t.Fatalf("PUT: %d", st)
	}

	// The application fails: the record stays pending and the client sees
	// the application's answer.
	app.Fail(t, true)
	resp := s.call("alice", "POST", "/"+c.ID+"/complete", nil, nil)
	if resp.StatusCode != 500 {
		t.Fatalf("complete while the app fails: %d", resp.StatusCode)
	}
	var rec record
	s.call("alice", "GET", "/"+c.ID, nil, &rec)
	if rec.Status != "pending" {
		t.Fatalf("after the app refused: %s", rec.Status)
	}

	// Spoofed headers from the client never reach the application.
	app.Fail(t, false)
	req, _ := http.NewRequest("POST", s.base+"/up/"+c.ID+"/complete", nil)
	req.SetBasicAuth("alice", testUsers["alice"])
	req.Header.Set("X-Upload-Subject", "mallory")
	req.Header.Set("X-Upload-Size", "999999")
	req.Header.Set("X-Upload-Signature", "v1=forged")
	got := do(t, noRedirect, req)
	if got.StatusCode != 200 || !bytes.Contains(got.body, []byte("thanks for the upload")) {
		t.Fatalf("complete: %d %s", got.StatusCode, got.body)
	}
	st, err := app.State()
	if err != nil {
		t.Fatal(err)
	}
	u, ok := st.Uploads[c.ID]
	if !ok {
		t.Fatalf("the app did not record the upload: %+v", st)
	}
	if u.Subject != "alice" || u.Size != int64(len(body)) || u.Key != c.Key || u.Type != "text/plain" || u.Filename != "Résumé final.txt" {
		t.Errorf("the app recorded %+v", u)
	}
	s.call("alice", "GET", "/"+c.ID, nil, &rec)
	if rec.Status != "confirmed" {
		t.Errorf("after the app accepted: %s", rec.Status)
	}

	// A forged forward straight to the app is refused by its signature check.
	fr, _ := http.NewRequest("POST", app.URL+"/uploads/confirmed", nil)
	for _, h := range forwardHeaders {
		fr.Header.Set(h, "x")
	}
	fr.Header.Set("X-Upload-Timestamp", fmt.Sprint(time.Now().Unix()))
	fr.Header.Set("X-Upload-Signature", "v1=00")
	if r := do(t, http.DefaultClient, fr); r.StatusCode != 401 {
		t.Errorf("forged forward: %d", r.StatusCode)
	}

	// Completing again answers the record without a second hand-off.
	before, _ := app.State()
	if resp := s.call("alice", "POST", "/"+c.ID+"/complete", nil, &rec); resp.StatusCode != 200 || rec.Status != "confirmed" {
		t.Errorf("repeat complete: %d", resp.StatusCode)
	}
	if after, _ := app.State(); after.Deliveries != before.Deliveries {
		t.Errorf("repeat complete reached the app again")
	}
}

func TestEncodeRFC8187(t *testing.T) {
	for in, want := range map[string]string{
		"a.txt":        "UTF-8''a.txt",
		"Résumé.pdf":   "UTF-8''R%C3%A9sum%C3%A9.pdf",
		`a "b";c.txt`:  "UTF-8''a%20%22b%22%3Bc.txt",
		"100%\r\n.txt": "UTF-8''100%25%0D%0A.txt",
	} {
		if got := encodeRFC8187(in); got != want {
			t.Errorf("encodeRFC8187(%q) = %q, want %q", in, got, want)
		}
	}
}

// A forwarding route with nothing after it must not tell the client its
// upload was taken: 502, and the record stays pending.
func TestForwardWithoutApplication(t *testing.T) {
	app := realservers.StartExampleApp(t, 0, filepath.Join(t.TempDir(), "state.json"), appSecret)
	t.Setenv("CU_TEST_APP_SECRET", appSecret)
	s := newSite(t, oneServer(t))
	s.load(s.caddyfile("forward /uploads/confirmed {\n secret {env.CU_TEST_APP_SECRET}\n }"))
	c := s.create("alice", "a.txt", 3, "text/plain")
	if st := s.put(c, []byte("abc"), nil); st != 200 {
		t.Fatalf("PUT: %d", st)
	}
	expectError(t, s.call("alice", "POST", "/"+c.ID+"/complete", nil, nil), 502, "forward_failed")
	var rec record
	s.call("alice", "GET", "/"+c.ID, nil, &rec)
	if rec.Status != "pending" {
		t.Fatalf("record after a completion nobody took: %s", rec.Status)
	}

	// Positive control: the same route with the application after it
	// confirms the same upload.
	s.load(s.caddyfileWith("forward /uploads/confirmed {\n secret {env.CU_TEST_APP_SECRET}\n }", "reverse_proxy "+app.URL))
	if resp := s.call("alice", "POST", "/"+c.ID+"/complete", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("complete with the application: %d", resp.StatusCode)
	}
	s.call("alice", "GET", "/"+c.ID, nil, &rec)
	if rec.Status != "confirmed" {
		t.Fatalf("record after the application took it: %s", rec.Status)
	}
}

// An upload the application accepts is confirmed, even when the client is
// gone and the record's deadline passed while the application decided: the
// sweeper leaves a record alone while it is forwarded, so it never deletes
// an object the application took.
func TestForwardAcceptedIsConfirmed(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		arrived, release := make(chan string, 4), make(chan int)
		app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			arrived <- r.Header.Get("X-Upload-Id")
			w.WriteHeader(<-release)
		}))
		t.Cleanup(app.Close)
		t.Setenv("CU_TEST_APP_SECRET", appSecret)
		s := newSite(t, srv)
		s.load(s.caddyfileWith("url_ttl 3s\n pending_ttl 3s\n sweep_interval 1s\n forward {\n secret {env.CU_TEST_APP_SECRET}\n timeout 30s\n }", "reverse_proxy "+app.URL))

		complete := func(c created) (cancel func(), done chan int) {
			ctx, cancel := context.WithCancel(context.Background())
			done = make(chan int, 1)
			go func() {
				req, _ := http.NewRequestWithContext(ctx, "POST", s.base+"/up/"+c.ID+"/complete", nil)
				req.SetBasicAuth("alice", testUsers["alice"])
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					done <- 0
					return
				}
				resp.Body.Close()
				done <- resp.StatusCode
			}()
			if id := <-arrived; id != c.ID {
				t.Errorf("the app got %s, want %s", id, c.ID)
			}
			return cancel, done
		}
		status := func(id string) string {
			var rec record
			s.call("alice", "GET", "/"+id, nil, &rec)
			return rec.Status
		}
		pastDeadline := func(c created) {
			time.Sleep(time.Until(c.ExpiresAt) + 2500*time.Millisecond) // past the deadline, two sweeps later
		}

		// The client stays: it gets the app's 2xx after the deadline passed.
		stay := s.create("alice", "stay.txt", 4, "text/plain")
		if st := s.put(stay, []byte("stay"), nil); st != 200 {
			t.Fatalf("PUT: %d", st)
		}
		_, done := complete(stay)
		pastDeadline(stay)
		release <- 200
		if st := <-done; st != 200 {
			t.Errorf("complete answered %d after the app accepted", st)
		}

		// The client leaves while the app decides.
		gone := s.create("alice", "gone.txt", 4, "text/plain")
		if st := s.put(gone, []byte("gone"), nil); st != 200 {
			t.Fatalf("PUT: %d", st)
		}
		cancel, done := complete(gone)
		cancel()
		<-done
		pastDeadline(gone)
		release <- 201
		eventually(t, "the accepted upload confirmed", func() bool { return status(gone.ID) == "confirmed" })

		time.Sleep(2 * time.Second) // more sweeps
		for _, c := range []created{stay, gone} {
			if st := status(c.ID); st != "confirmed" || !s.objectExists(c.Key) {
				t.Errorf("%s: status %s, object there: %v", c.Key, st, s.objectExists(c.Key))
			}
		}

		// Control: an upload the app refuses stays pending and is swept
		// once its hold is over; one never completed is swept on time.
		idle := s.create("alice", "idle.txt", 4, "text/plain")
		if st := s.put(idle, []byte("idle"), nil); st != 200 {
			t.Fatalf("PUT: %d", st)
		}
		eventually(t, "the idle upload swept", func() bool { return status(idle.ID) == "expired" && !s.objectExists(idle.Key) })
	})
}
