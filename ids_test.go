package caddyupload

import (
	"sort"
	"testing"
	"time"
)

func TestIDs(t *testing.T) {
	seen := make(map[string]bool)
	var ids []string
	for i := 0; i < 2000; i++ {
		id := newID()
		if !validID(id) {
			t.Fatalf("newID() = %q is not valid", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
		ids = append(ids, id)
		if i%500 == 0 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	// Ids made in later milliseconds sort after earlier ones.
	if !sort.SliceIsSorted([]string{ids[0], ids[500], ids[1000], ids[1500]}, func(i, j int) bool {
		return []string{ids[0], ids[500], ids[1000], ids[1500]}[i] < []string{ids[0], ids[500], ids[1000], ids[1500]}[j]
	}) {
		t.Errorf("ids are not time-ordered: %s %s %s %s", ids[0], ids[500], ids[1000], ids[1500])
	}
	for _, bad := range []string{"", "short", ids[0][:41], ids[0] + "a", "0" + ids[0][1:], "A" + ids[0][1:], "-" + ids[0][1:]} {
		if validID(bad) {
			t.Errorf("validID(%q) = true", bad)
		}
	}
}
