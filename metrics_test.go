package caddyupload

import (
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyupload/caddyupload/internal/realservers"
)

// withMetrics adds the `metrics` handler at /metrics to a test site's
// Caddyfile, as an operator would.
func withMetrics(cfg string) string {
	return strings.Replace(cfg, "\thandle_path /up/* {", "\thandle /metrics {\n\t\tmetrics\n\t}\n\thandle_path /up/* {", 1)
}

var (
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$`)
	labelPair  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// scrape reads the site's metrics endpoint; it returns the caddy_upload_
// samples.
func (s *testSite) scrape() map[string]float64 {
	s.t.Helper()
	resp, err := noRedirect.Get(s.base + "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		s.t.Fatalf("metrics endpoint: %d %s", resp.StatusCode, body)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, "caddy_upload_") {
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			s.t.Fatalf("unparsable sample %q", line)
		}
		v, err := strconv.ParseFloat(m[4], 64)
		if err != nil {
			s.t.Fatalf("sample %q: %v", line, err)
		}
		out[seriesKey(m[1], parseLabels(m[3]))] = v
	}
	if len(out) == 0 {
		s.t.Fatalf("no caddy_upload_ metrics served:\n%s", body)
	}
	return out
}

func parseLabels(s string) map[string]string {
	labels := map[string]string{}
	for _, p := range labelPair.FindAllStringSubmatch(s, -1) {
		labels[p[1]] = p[2]
	}
	return labels
}

// seriesKey names a series canonically: name{k=v,...} sorted by label.
func seriesKey(name string, labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%s", k, labels[k])
	}
	b.WriteByte('}')
	return b.String()
}

// m names a series by name and label pairs.
func m(name string, kv ...string) string {
	labels := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		labels[kv[i]] = kv[i+1]
	}
	return seriesKey(name, labels)
}

// expectMoved checks that each series moved by exactly its delta between
// two scrapes.
func expectMoved(t *testing.T, before, after map[string]float64, want map[string]float64) {
	t.Helper()
	for k, d := range want {
		if _, ok := after[k]; !ok {
			t.Errorf("%s: not served", k)
			continue
		}
		if got := after[k] - before[k]; got != d {
			t.Errorf("%s moved by %v, want %v", k, got, d)
		}
	}
}

// Each counter moves when its event happens, and only then: a create, a
// confirmation (and its bytes), a rejection by its reason, an abort, a
// part signed, API errors by code, storage calls, ledger commits. No label
// carries a subject, a key or an id.
func TestMetricsMove(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *realservers.S3Server) {
		s := newSite(t, srv)
		const route = "metered"
		s.load(withMetrics(s.caddyfile("name " + route + "\n multipart_threshold 5MiB\n types text/plain image/png\n key files/{user}/{uuid}{ext}")))
		r := func(name string, kv ...string) string { return m(name, append([]string{"route", route}, kv...)...) }

		// A legitimate upload is created and confirmed.
		before := s.scrape()
		c := s.create("alice", "a.txt", 5, "text/plain")
		if st := s.put(c, []byte("hello"), nil); st != 200 {
			t.Fatalf("PUT: %d", st)
		}
		var rec record
		if resp := s.call("alice", "POST", "/"+c.ID+"/complete", nil, &rec); resp.StatusCode != 200 || rec.Status != "confirmed" {
			t.Fatalf("complete: %d %+v", resp.StatusCode, rec)
		}
		after := s.scrape()
		expectMoved(t, before, after, map[string]float64{
			r("caddy_upload_created_total", "kind", "PUT"):       1,
			r("caddy_upload_created_total", "kind", "MULTIPART"): 0,
			r("caddy_upload_confirmed_total"):                    1,
			r("caddy_upload_confirmed_bytes_total"):              5,
			r("caddy_upload_rejected_total", "reason", "size"):   0,
		})
		// A completion of a confirmed upload answers it again: no count.
		if resp := s.call("alice", "POST", "/"+c.ID+"/complete", nil, nil); resp.StatusCode != 200 {
			t.Fatalf("second complete: %d", resp.StatusCode)
		}
		if got := s.scrape()[r("caddy_upload_confirmed_total")]; got != after[r("caddy_upload_confirmed_total")] {
			t.Errorf("a repeated completion counted: %v", got)
		}
		if after[r("caddy_upload_storage_duration_seconds_count", "operation", "head")] <= before[r("caddy_upload_storage_duration_seconds_count", "operation", "head")] {
			t.Error("the completion's HEAD was not measured")
		}
		if after[m("caddy_upload_ledger_commit_duration_seconds_count")] < before[m("caddy_upload_ledger_commit_duration_seconds_count")]+2 {
			t.Error("the create's and the confirmation's commits were not measured")
		}
		if after[m("caddy_upload_ledger_failed")] != 0 {
			t.Error("ledger_failed is set on a working ledger")
		}

		// Objects that are not what was declared are rejected by reason.
		before = s.scrape()
		wrongSize := s.create("alice", "b.txt", 3, "text/plain")
		s.putDirect(wrongSize.Key, []byte("12345"), "text/plain")
		expectError(t, s.call("alice", "POST", "/"+wrongSize.ID+"/complete", nil, nil), 422, "verification_failed")
		wrongType := s.create("alice", "c.txt", 3, "text/plain")
		s.putDirect(wrongType.Key, []byte("abc"), "text/html")
		expectError(t, s.call("alice", "POST", "/"+wrongType.ID+"/complete", nil, nil), 422, "verification_failed")
		notPNG := s.create("alice", "d.png", 3, "image/png")
		s.putDirect(notPNG.Key, []byte("abc"), "image/png")
		expectError(t, s.call("alice", "POST", "/"+notPNG.ID+"/complete", nil, nil), 422, "verification_failed")
		after = s.scrape()
		expectMoved(t, before, after, map[string]float64{
			r("caddy_upload_created_total", "kind", "PUT"):                3,
			r("caddy_upload_rejected_total", "reason", "size"):            1,
			r("caddy_upload_rejected_total", "reason", "type"):            1,
			r("caddy_upload_rejected_total", "reason", "content"):         1,
			r("caddy_upload_confirmed_total"):                             0,
			r("caddy_upload_errors_total", "code", "verification_failed"): 3,
		})

		// An abort, a multipart create and a part signed; API errors by code.
		before = s.scrape()
		ab := s.create("alice", "e.txt", 3, "text/plain")
		if resp := s.call("alice", "DELETE", "/"+ab.ID, nil, nil); resp.StatusCode != 204 {
			t.Fatalf("abort: %d", resp.StatusCode)
		}
		big := s.create("alice", "f.txt", 40<<20, "text/plain")
		if resp := s.call("alice", "POST", "/"+big.ID+"/parts", map[string]any{"numbers": []int{1, 2}}, nil); resp.StatusCode != 200 {
			t.Fatalf("sign parts: %d", resp.StatusCode)
		}
		expectError(t, s.call("bob", "GET", "/"+c.ID, nil, nil), 404, "not_found")
		expectError(t, s.call("alice", "PUT", "/"+c.ID, nil, nil), 405, "method_not_allowed")
		expectError(t, s.call("alice", "POST", "/", map[string]any{"filename": "x.exe", "size": 1, "type": "application/x-msdownload"}, nil), 415, "unsupported_type")
		after = s.scrape()
		expectMoved(t, before, after, map[string]float64{
			r("caddy_upload_aborted_total"):                              1,
			r("caddy_upload_created_total", "kind", "MULTIPART"):         1,
			r("caddy_upload_created_total", "kind", "PUT"):               1,
			r("caddy_upload_parts_signed_total"):                         2,
			r("caddy_upload_errors_total", "code", "not_found"):          1,
			r("caddy_upload_errors_total", "code", "method_not_allowed"): 1,
			r("caddy_upload_errors_total", "code", "unsupported_type"):   1,
		})
		// A HEAD of an object not uploaded yet is an answer, not a failure.
		if k := r("caddy_upload_storage_errors_total", "operation", "head"); after[k] != before[k] {
			t.Errorf("%s moved by %v", k, after[k]-before[k])
		}
		if after[r("caddy_upload_storage_duration_seconds_count", "operation", "create_multipart")] != before[r("caddy_upload_storage_duration_seconds_count", "operation", "create_multipart")]+1 {
			t.Error("the multipart create's storage call was not measured")
		}

		// Labels are bounded: no subject, key or id in any of them.
		forbidden := []string{"alice", "bob", c.Key, c.ID, wrongSize.Key, big.ID, "files/"}
		for k := range after {
			for _, f := range forbidden {
				if strings.Contains(k, f) {
					t.Errorf("series %s carries %q", k, f)
				}
			}
		}
	})
}

// The sweeper's work is counted: sweeps, uploads expired, objects deleted.
func TestMetricsSweeper(t *testing.T) {
	s := newSite(t, oneServer(t))
	const route = "swept"
	s.load(withMetrics(s.caddyfile("name " + route + "\n url_ttl 1s\n pending_ttl 1s\n sweep_interval 1s")))
	r := func(name string) string { return m(name, "route", route) }
	before := s.scrape()
	c := s.create("alice", "a.txt", 3, "text/plain")
	eventually(t, "the pending upload expired", func() bool {
		var rec record
		s.call("alice", "GET", "/"+c.ID, nil, &rec)
		return rec.Status == "expired"
	})
	eventually(t, "the expiry counted", func() bool {
		after := s.scrape()
		return after[r("caddy_upload_expired_total")]-before[r("caddy_upload_expired_total")] == 1 &&
			after[r("caddy_upload_swept_total")] > before[r("caddy_upload_swept_total")] &&
			after[r("caddy_upload_sweeps_total")] > before[r("caddy_upload_sweeps_total")]
	})
	if got := s.scrape()[r("caddy_upload_expired_total")] - before[r("caddy_upload_expired_total")]; got != 1 {
		t.Errorf("expired moved by %v, want 1", got)
	}
}

// Two routes in one config, and a reload, register the collectors once per
// registry and keep counting: a config that loads at all proves the
// former; the count after the reload proves the latter.
func TestMetricsAcrossReload(t *testing.T) {
	s := newSite(t, oneServer(t))
	cfg := withMetrics(s.caddyfile("name reloaded"))
	second := strings.Replace(cfg, "\thandle_path /up/* {", "\thandle_path /up2/* {\n\t\tupload {\n\t\t\tname other\n\t\t\tsweeper off\n\t\t\tledger "+s.dir+"/ledger.db\n\t\t\ts3 {\n\t\t\t\tbucket "+s.bucket+"\n\t\t\t\tendpoint "+s.s3.Endpoint+"\n\t\t\t\taccess_key_id {env.CU_TEST_S3_KEY}\n\t\t\t\tsecret_access_key {env.CU_TEST_S3_SECRET}\n\t\t\t}\n\t\t}\n\t}\n\thandle_path /up/* {", 1)
	s.load(second)
	key := m("caddy_upload_created_total", "route", "reloaded", "kind", "PUT")
	before := s.scrape()
	s.create("alice", "a.txt", 3, "text/plain")
	if err := loadCaddyfile(strings.Replace(second, "name reloaded", "name reloaded\n max_size 2MiB", 1)); err != nil {
		t.Fatal(err)
	}
	s.waitServing()
	s.create("alice", "b.txt", 3, "text/plain")
	after := s.scrape()
	if got := after[key] - before[key]; got != 2 {
		t.Errorf("created moved by %v across a reload, want 2", got)
	}
	if _, ok := after[m("caddy_upload_created_total", "route", "other", "kind", "PUT")]; !ok {
		t.Error("the second route's series are not served")
	}
}
