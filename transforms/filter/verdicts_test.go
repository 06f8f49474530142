package filter

import (
	"math"
	"strings"
	"testing"
)

// TestVerdictsRoundTrip: what bindPairsFn encodes, splitBoundFn reads back
// row for row, and a second read that does not match the first (another id,
// more or fewer rows) is an error naming the file, never a wrong join.
func TestVerdictsRoundTrip(t *testing.T) {
	tab := &decisionTable{strIx: map[string]uint32{}}
	row := func(lang, rsn string, score float64, rank int64, kept, ref bool) decRow {
		r := decRow{score: score, rank: rank, kept: kept, hasRef: ref, n: 1,
			lang: tab.str(lang), reason: tab.str(rsn), scoreType: tab.str("pair"), target: tab.str("consensus"),
			rule: tab.str("positive"), gate: tab.str("")}
		if ref {
			r.refC, r.refR = -12.5, math.NaN()
		}
		return r
	}
	var w verdictWriter
	w.decided("a", tab, row("en", "kept", 0.25, 3, true, true))
	w.dead("b", "no_sketch: no sketch for this pair")
	w.decided("c", tab, row("de", "conflict", -0.5, -1, false, false))
	w.dead("d", "no_sketch: no sketch for this pair")
	b := BoundPairs{Strs: w.strs, Rows: w.buf, N: w.n}
	b.Split.Path = "/lake/pairs-00000-of-00001.parquet"
	if len(b.Strs) != 9 {
		t.Fatalf("strings stored %d times, want 9 distinct: %q", len(b.Strs), b.Strs)
	}

	r := verdictReader{b: b}
	va, _ := r.next("a")
	vb, _ := r.next("b")
	vc, _ := r.next("c")
	vd, err := r.next("d")
	if err != nil || r.done() != nil {
		t.Fatal(err, r.done())
	}
	if va.dead != "" || va.lang != "en" || va.reason != "kept" || va.score != 0.25 || va.rank != 3 || !va.kept ||
		!va.hasRef || va.refC != -12.5 || !math.IsNaN(va.refR) || va.scoreType != "pair" || va.rule != "positive" {
		t.Errorf("a: %+v", va)
	}
	if vb.dead != "no_sketch: no sketch for this pair" || vd.dead != vb.dead {
		t.Errorf("b, d: %+v %+v", vb, vd)
	}
	if vc.dead != "" || vc.lang != "de" || vc.kept || vc.hasRef || vc.rank != -1 || vc.score != -0.5 {
		t.Errorf("c: %+v", vc)
	}

	bad := []struct {
		name string
		read func(r *verdictReader) error
		want string
	}{
		{"other id", func(r *verdictReader) error { _, err := r.next("x"); return err }, `pair id "x" differs`},
		{"more rows", func(r *verdictReader) error {
			for _, id := range []string{"a", "b", "c", "d"} {
				r.next(id)
			}
			_, err := r.next("e")
			return err
		}, "more rows"},
		{"fewer rows", func(r *verdictReader) error { r.next("a"); return r.done() }, "has 1 rows, 4 when"},
		{"truncated", func(r *verdictReader) error {
			r.b.Rows = r.b.Rows[:len(r.b.Rows)-3]
			for _, id := range []string{"a", "b", "c", "d"} {
				if _, err := r.next(id); err != nil {
					return err
				}
			}
			return r.done()
		}, "row 3"},
	}
	for _, c := range bad {
		r := verdictReader{b: b}
		err := c.read(&r)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "pairs-00000-of-00001.parquet") {
			t.Errorf("%s: %v, want an error with %q and the file", c.name, err, c.want)
		}
	}
}
