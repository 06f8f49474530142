package lakeio

import "testing"

func TestISOList(t *testing.T) {
	if len(ISO639_1) != 185 {
		t.Fatalf("%d codes", len(ISO639_1))
	}
	seen := map[string]bool{}
	for _, c := range ISO639_1 {
		if len(c) != 2 || seen[c] {
			t.Errorf("bad or duplicate %q", c)
		}
		seen[c] = true
	}
}
