package main

import (
	"strings"
	"testing"
	"time"
)

const fullRun = `# Benchmark results

Written by ` + "`bench/run.sh`" + ` on 2026-11-26 02:45 UTC (6m12s). All figures come from this one run.

## Summary

| what | candidate | baseline (same run) | ratio | target |
|---|---|---|---:|---|
| create upload (cached token) | 6793 req/s | respond | 0.31× | ≥ 0.5× |
| ` + "`/s3/params`" + ` | 5866 req/s | Companion 6.2.2: 627 req/s | 9.8× | ≥ 20× |
| 1024 MiB upload: wall time | 5.1 s | 3.2 s | 1.60× | |
| sweeper: expire | 3.90 s | | | |
| ` + "`Create/group-commit`" + ` | 74021 ns/op | | | |

## Machine

- nproc: 2

## Method

- old method

## ` + "`/s3/params`" + ` vs Uppy Companion

old companion

## 1024 MiB upload: through the module vs through the proxy

old bytes table

## Sweeper

old sweeper

## Micro-benchmarks

old micro
`

// A run of a subset keeps what the others measured, replaces its own
// rows and sections (also at another size), puts new ones where a full
// run would, and says so in the head.
func TestMergeResults(t *testing.T) {
	fresh := `# Benchmark results

Written by now.

## Summary

| what | candidate | baseline (same run) | ratio | target |
|---|---|---|---:|---|
| Go client, 256 MiB upload: vs aws-sdk-go-v2 upload manager | 300 MB/s | 310 MB/s | 0.97× | ≥ 0.8× |

## Machine

- nproc: 64

## Method

- new method

## Go client vs aws-sdk-go-v2's upload manager

client section v1
`
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	once := mergeResults(fullRun, fresh, at, "client")
	for _, want := range []string{
		"All figures come from this one run, except those a line below names.",
		"Re-measured with `-only client` on 2026-12-01 10:00 UTC",
		"| create upload (cached token) | 6793 req/s",
		"old companion", "old bytes table", "old sweeper", "old micro", "- nproc: 2", "- old method",
		"| 1024 MiB upload: wall time | 5.1 s | 3.2 s | 1.60× | |\n| Go client, 256 MiB upload: vs aws-sdk-go-v2 upload manager | 300 MB/s",
		"old bytes table\n\n## Go client vs aws-sdk-go-v2's upload manager\n\nclient section v1\n## Sweeper",
	} {
		if !strings.Contains(once, want) {
			t.Errorf("merged results lack %q:\n%s", want, once)
		}
	}
	for _, gone := range []string{"nproc: 64", "new method"} {
		if strings.Contains(once, gone) {
			t.Errorf("merged results took the subset's %q", gone)
		}
	}
	// Again at another size: replaced, not added.
	again := strings.ReplaceAll(strings.ReplaceAll(fresh, "256 MiB", "1024 MiB"), "v1", "v2")
	twice := mergeResults(once, again, at.Add(time.Hour), "client")
	if strings.Count(twice, "Go client, ") != 1 || !strings.Contains(twice, "Go client, 1024 MiB upload") {
		t.Errorf("the summary row was not replaced:\n%s", twice)
	}
	if strings.Count(twice, "## Go client vs") != 1 || !strings.Contains(twice, "client section v2") {
		t.Errorf("the section was not replaced:\n%s", twice)
	}
	if strings.Count(twice, "Re-measured with `-only client`") != 1 || !strings.Contains(twice, "11:00 UTC") {
		t.Errorf("the head's note was not replaced:\n%s", twice)
	}
}
