package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// accessEntry is the part of a Caddy access log entry the tests read.
type accessEntry struct {
	Logger  string `json:"logger"`
	Msg     string `json:"msg"`
	Status  int    `json:"status"`
	Request struct {
		Method string `json:"method"`
		URI    string `json:"uri"`
	} `json:"request"`
	RespHeaders map[string][]string `json:"resp_headers"`
}

// TestAccessLogHasNoPresignedCredentials runs a site with an access log
// file, as an operator writes it, and does what users do: a presigned PUT
// through the bucket path, a download redirect and the presigned GET it
// leads to, and a request with a forged signature. The log has an entry
// for each, and no signature or credential anywhere.
func TestAccessLogHasNoPresignedCredentials(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	logPath := filepath.Join(s.Dir, "access.log")
	s.Site = "log {\n\t\toutput file " + logPath + "\n\t}"
	s.start(t)

	content := "logged without credentials\n"
	c := s.create(t, "note.txt", len(content), "text/plain")
	putURL, _ := url.Parse(c.URL)
	if status, body := put(t, c, []byte(content), ""); status != http.StatusOK {
		t.Fatalf("PUT: %d %s", status, body)
	}
	s.complete(t, c.ID)
	status, loc := s.api(t, http.MethodGet, "/"+c.ID+"/download", nil)
	if status != http.StatusFound || !strings.Contains(string(loc), "X-Amz-Signature=") {
		t.Fatalf("download: %d %s, want a redirect to a presigned GET", status, loc)
	}
	get, _ := url.Parse(string(loc))
	resp, err := http.Get(string(loc))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("presigned GET: %d", resp.StatusCode)
	}
	forged := *get
	q := forged.Query()
	q.Set("X-Amz-Signature", strings.Repeat("0", 64))
	forged.RawQuery = q.Encode()
	resp, err = http.Get(forged.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("forged presigned GET: %d, want 403", resp.StatusCode)
	}

	want := []struct {
		method, path string
		status       int
	}{
		{http.MethodPut, putURL.Path, http.StatusOK},
		{http.MethodGet, "/uploads/" + c.ID + "/download", http.StatusFound},
		{http.MethodGet, get.Path, http.StatusOK},
		{http.MethodGet, get.Path, http.StatusForbidden},
	}
	var raw []byte
	var entries []accessEntry
	waitFor(t, "the access log entries", func() bool {
		raw, _ = os.ReadFile(logPath)
		entries = entries[:0]
		sc := bufio.NewScanner(bytes.NewReader(raw))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var e accessEntry
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				entries = append(entries, e)
			}
		}
		return len(entries) >= 6 // create, PUT, complete, download, GET, forged GET
	})
	for _, secret := range []string{"x-amz-signature", "x-amz-credential", strings.ToLower(putURL.Query().Get("X-Amz-Signature")), strings.ToLower(get.Query().Get("X-Amz-Signature"))} {
		if bytes.Contains(bytes.ToLower(raw), []byte(secret)) {
			t.Errorf("the access log contains %q:\n%s", secret, raw)
		}
	}
	for _, w := range want {
		found := false
		for _, e := range entries {
			path, query, _ := strings.Cut(e.Request.URI, "?")
			if e.Request.Method == w.method && path == w.path && e.Status == w.status && e.Msg == "handled request" &&
				strings.HasPrefix(e.Logger, "http.log.access") {
				found = true
				if w.path != "/uploads/"+c.ID+"/download" && !strings.Contains(query, "X-Amz-Date=") {
					t.Errorf("%s %s: logged query %q lost the parameters that are not credentials", w.method, w.path, query)
				}
				if w.status == http.StatusFound {
					if l := e.RespHeaders["Location"]; len(l) != 1 || !strings.Contains(l[0], get.Path) {
						t.Errorf("download entry: Location %v, want the presigned GET's path", l)
					}
				}
			}
		}
		if !found {
			t.Errorf("no access log entry for %s %s (%d):\n%s", w.method, w.path, w.status, raw)
		}
	}
}

// TestAccessLogHasNoLinkSignatures: a download link's signature is a
// bearer credential too; neither the redirect to it nor the requests that
// use it (valid or tampered) leave it in the access log.
func TestAccessLogHasNoLinkSignatures(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	logPath := filepath.Join(s.Dir, "access.log")
	s.Site = "log {\n\t\toutput file " + logPath + "\n\t}"
	s.Upload = "download_via link {\n\t\t\tsecret {env.CU_TEST_LINK_SECRET}\n\t\t}"
	s.start(t, "CU_TEST_LINK_SECRET=link-secret-0123456789abcdef")

	content := "served by a link\n"
	c := s.create(t, "note.txt", len(content), "text/plain")
	if status, body := put(t, c, []byte(content), ""); status != http.StatusOK {
		t.Fatalf("PUT: %d %s", status, body)
	}
	s.complete(t, c.ID)
	status, loc := s.api(t, http.MethodGet, "/"+c.ID+"/download", nil)
	link, err := url.Parse(string(loc))
	if status != http.StatusFound || err != nil || link.Query().Get("sig") == "" {
		t.Fatalf("download: %d %s, want a redirect to a link", status, loc)
	}
	sig := link.Query().Get("sig")
	for _, u := range []string{string(loc), strings.Replace(string(loc), sig, strings.Repeat("A", len(sig)), 1)} {
		req, _ := http.NewRequest(http.MethodGet, s.base()+u, nil)
		req.SetBasicAuth(user, password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[bool]int{true: 200, false: 403}[u == string(loc)]; resp.StatusCode != want {
			t.Fatalf("GET %s: %d, want %d", u, resp.StatusCode, want)
		}
	}
	var raw []byte
	waitFor(t, "the access log entries", func() bool {
		raw, _ = os.ReadFile(logPath)
		return bytes.Count(raw, []byte(`"/uploads/`+c.ID+`/content`)) >= 2 && bytes.Contains(raw, []byte("/download"))
	})
	if bytes.Contains(raw, []byte(sig)) || bytes.Contains(raw, []byte("sig=")) {
		t.Errorf("the access log contains the link's signature:\n%s", raw)
	}
	if !bytes.Contains(raw, []byte("exp=")) {
		t.Errorf("the access log lost the parameters that are not credentials:\n%s", raw)
	}
}
