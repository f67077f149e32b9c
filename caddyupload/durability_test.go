package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tryCreate is create that reports failures instead of failing the test:
// Caddy may be killed under it.
func (s *site) tryCreate(client *http.Client, name string, size int) (created, bool) {
	b, _ := json.Marshal(map[string]any{"filename": name, "size": size, "type": "text/plain"})
	req, _ := http.NewRequest(http.MethodPost, s.base()+"/uploads/", bytes.NewReader(b))
	req.SetBasicAuth(user, password)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return created{}, false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusCreated {
		return created{}, false
	}
	var c created
	return c, json.Unmarshal(body, &c) == nil
}

// TestKill9LosesNothingAcknowledged kills Caddy with SIGKILL while
// clients create uploads, then restarts it on the same data: every upload
// whose URL was handed out, and every confirmation answered 200, is there.
func TestKill9LosesNothingAcknowledged(t *testing.T) {
	s := newSite(t)
	s.start(t)

	confirmed := s.upload(t, "kept!")
	pending := s.create(t, "later.txt", 5, "text/plain")
	if status, body := put(t, pending, []byte("later"), ""); status != http.StatusOK {
		t.Fatalf("PUT: %d %s", status, body)
	}

	var (
		mu    sync.Mutex
		acked []created
		stop  atomic.Bool
		wg    sync.WaitGroup
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			for i := 0; !stop.Load(); i++ {
				if c, ok := s.tryCreate(client, fmt.Sprintf("w%d-%d.txt", w, i), 5); ok {
					mu.Lock()
					acked = append(acked, c)
					mu.Unlock()
				}
			}
		}(w)
	}
	waitFor(t, "uploads under way", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 200
	})
	s.proc.Kill()
	stop.Store(true)
	wg.Wait()
	waitFor(t, "the embedded server to follow Caddy", func() bool { return len(embeddedServers(t, s.Dir+"/s3")) == 0 })

	s.start(t)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d uploads acknowledged before kill -9", len(acked))
	for _, c := range acked {
		status, body := s.api(t, http.MethodGet, "/"+c.ID, nil)
		if status != http.StatusOK || !strings.Contains(string(body), `"status":"pending"`) {
			t.Fatalf("acknowledged upload %s after restart: %d %s", c.ID, status, body)
		}
	}
	status, body := s.api(t, http.MethodGet, "/"+confirmed, nil)
	if status != http.StatusOK || !strings.Contains(string(body), `"status":"confirmed"`) {
		t.Fatalf("confirmed upload after restart: %d %s", status, body)
	}
	if r := s.complete(t, pending.ID); r.Status != "confirmed" || r.Size != 5 {
		t.Fatalf("completing an upload sent before the crash: %+v", r)
	}
	if got := string(s.download(t, confirmed)); got != "kept!" {
		t.Fatalf("object after restart: %q", got)
	}
}

// TestReloadUnderUploadTraffic reloads changed configs while clients run
// whole uploads: none fails, and every object and record is intact.
func TestReloadUnderUploadTraffic(t *testing.T) {
	s := newSite(t)
	s.start(t)
	var (
		mu   sync.Mutex
		ids  []string
		fail []string
		stop atomic.Bool
		wg   sync.WaitGroup
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				content := fmt.Sprintf("w%d-%d", w, i)
				id, err := s.tryUpload(content)
				mu.Lock()
				if err != nil {
					fail = append(fail, err.Error())
				} else {
					ids = append(ids, id+"="+content)
				}
				mu.Unlock()
			}
		}(w)
	}
	for i := 0; i < 4; i++ {
		s.MaxSize = fmt.Sprintf("%dMiB", 2+i) // a change, or Caddy skips the reload
		if status, body := s.load(t); status != http.StatusOK {
			t.Fatalf("reload %d: %d %s", i, status, body)
		}
		time.Sleep(300 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if len(fail) > 0 {
		t.Fatalf("%d uploads failed across reloads, e.g. %s", len(fail), fail[0])
	}
	if len(ids) < 8 {
		t.Fatalf("only %d uploads ran", len(ids))
	}
	t.Logf("%d uploads across 4 reloads", len(ids))
	for _, pair := range ids {
		id, content, _ := strings.Cut(pair, "=")
		if got := string(s.download(t, id)); got != content {
			t.Fatalf("upload %s: object %q, want %q", id, got, content)
		}
	}
}

// tryUpload is upload returning errors; a request the old config's server
// closed during a reload is retried once, as browsers do.
func (s *site) tryUpload(content string) (string, error) {
	client := &http.Client{Timeout: 20 * time.Second}
	var c created
	var ok bool
	for attempt := 0; attempt < 2 && !ok; attempt++ {
		c, ok = s.tryCreate(client, "n.txt", len(content))
	}
	if !ok {
		return "", fmt.Errorf("create failed")
	}
	for attempt := 0; ; attempt++ {
		req, _ := http.NewRequest(c.Method, c.URL, strings.NewReader(content))
		setSigned(req, c)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			// The URL creates its object once: on a retry, 412 says the
			// first attempt got through (completion verifies it).
			if resp.StatusCode == http.StatusOK || attempt > 0 && resp.StatusCode == http.StatusPreconditionFailed {
				break
			}
			err = fmt.Errorf("PUT: %s", resp.Status)
		}
		if attempt == 1 {
			return "", err
		}
	}
	for attempt := 0; ; attempt++ {
		req, _ := http.NewRequest(http.MethodPost, s.base()+"/uploads/"+c.ID+"/complete", nil)
		req.SetBasicAuth(user, password)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"confirmed"`) {
				return c.ID, nil
			}
			err = fmt.Errorf("complete: %s %s", resp.Status, body)
		}
		if attempt == 1 {
			return "", err
		}
	}
}
