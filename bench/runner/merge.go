package main

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// sectionOrder is the order in which report.markdown writes its sections,
// by heading prefix with numbers as #; a merged section new to the file
// goes where a full run would have put it.
var sectionOrder = []string{
	"## Summary", "## Machine", "## Method", "## Create and sign parts", "## `/s#/params`",
	"## # MiB upload", "## Go client vs", "## Sweeper", "## Where a create", "## Micro-benchmarks", "## Levers tried",
}

var digits = regexp.MustCompile(`\d+`)

// sameKey compares headings and table rows with their numbers left out,
// so that a run at another size replaces the old figures.
func sameKey(s string) string { return digits.ReplaceAllString(strings.TrimSpace(s), "#") }

func sectionRank(heading string) int {
	k := sameKey(heading)
	for i, p := range sectionOrder {
		if strings.HasPrefix(k, p) {
			return i
		}
	}
	return len(sectionOrder)
}

type mdSection struct{ heading, body string }

// splitSections cuts a results file at its "## " headings; the part
// before the first is the head.
func splitSections(doc string) (head string, secs []mdSection) {
	lines := strings.SplitAfter(doc, "\n")
	var cur *mdSection
	var b strings.Builder
	flush := func() {
		if cur == nil {
			head = b.String()
		} else {
			cur.body = b.String()
			secs = append(secs, *cur)
		}
		b.Reset()
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "## ") {
			flush()
			cur = &mdSection{heading: strings.TrimRight(l, "\n")}
			continue
		}
		b.WriteString(l)
	}
	flush()
	return head, secs
}

// rowKey is the first cell of a table row.
func rowKey(row string) string {
	cells := strings.Split(row, "|")
	if len(cells) < 3 {
		return sameKey(row)
	}
	return sameKey(cells[1])
}

func isRow(l string) bool {
	return strings.HasPrefix(l, "| ") && !strings.HasPrefix(l, "| what |")
}

// rowOrder is the order of the summary rows, by the start of their first
// cell (numbers left out); the micro-benchmark rows, named in backquotes,
// close the table.
var rowOrder = []string{
	"create upload", "sign one part", "`/s#/params`", "# MiB upload", "Go client", "sweeper", "create while sweeping",
}

func rowRank(row string) int {
	k := strings.TrimSpace(rowKey(row))
	for i, p := range rowOrder {
		if strings.HasPrefix(k, p) {
			return i
		}
	}
	return len(rowOrder)
}

// mergeSummary replaces the summary rows that fresh has (by first cell) in
// old, and puts the others where a full run would.
func mergeSummary(old, fresh string) string {
	lines := strings.SplitAfter(old, "\n")
	var rows []string
	for _, l := range strings.SplitAfter(fresh, "\n") {
		if isRow(l) {
			rows = append(rows, l)
		}
	}
	for _, r := range rows {
		done := false
		for i, l := range lines {
			if isRow(l) && rowKey(l) == rowKey(r) {
				lines[i], done = r, true
				break
			}
		}
		if done {
			continue
		}
		at := -1
		for i, l := range lines {
			if !isRow(l) {
				continue
			}
			if rowRank(l) > rowRank(r) {
				at = i
				break
			}
			at = i + 1
		}
		if at < 0 {
			at = len(lines)
		}
		lines = append(lines[:at], append([]string{r}, lines[at:]...)...)
	}
	return strings.Join(lines, "")
}

// mergeResults puts what a run of a subset of the scenarios measured into
// the results an earlier run wrote: its summary rows and sections replace
// those of the same name, everything else stays, and the head says which
// figures are newer.
func mergeResults(old, fresh string, at time.Time, only string) string {
	oldHead, oldSecs := splitSections(old)
	_, freshSecs := splitSections(fresh)
	for _, fs := range freshSecs {
		switch sectionRank(fs.heading) {
		case 0:
			for i := range oldSecs {
				if sectionRank(oldSecs[i].heading) == 0 {
					oldSecs[i].body = mergeSummary(oldSecs[i].body, fs.body)
				}
			}
			continue
		case 1, 2: // the machine and the method of the full run stay
			continue
		}
		replaced := false
		for i := range oldSecs {
			if sameKey(oldSecs[i].heading) == sameKey(fs.heading) {
				oldSecs[i], replaced = fs, true
				break
			}
		}
		if replaced {
			continue
		}
		at := len(oldSecs)
		for i := range oldSecs {
			if sectionRank(oldSecs[i].heading) > sectionRank(fs.heading) {
				at = i
				break
			}
		}
		oldSecs = append(oldSecs[:at], append([]mdSection{fs}, oldSecs[at:]...)...)
	}

	note := fmt.Sprintf("Re-measured with `-only %s`", only)
	var head []string
	for _, l := range strings.SplitAfter(oldHead, "\n") {
		if strings.HasPrefix(l, note) {
			continue
		}
		l = strings.Replace(l, "All figures come from this one run.", "All figures come from this one run, except those a line below names.", 1)
		head = append(head, l)
	}
	// The head ends with a blank line; the note goes before it.
	for len(head) > 0 && strings.TrimSpace(head[len(head)-1]) == "" {
		head = head[:len(head)-1]
	}
	head = append(head, fmt.Sprintf("%s on %s: the summary rows and sections of %s.\n\n", note, at.UTC().Format("2006-01-02 15:04 MST"), only))
	var b strings.Builder
	b.WriteString(strings.Join(head, ""))
	for _, s := range oldSecs {
		b.WriteString(s.heading + "\n")
		b.WriteString(s.body)
	}
	return b.String()
}
