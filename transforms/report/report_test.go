package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"math"
	"strings"
	"testing"
)

func TestQuantilesAndBins(t *testing.T) {
	s := []float64{-0.5, -0.1, 0, 0.2, 0.3, 0.9, 1}
	q := Quantiles(s)
	want := []float64{-0.5, -0.5, -0.1, 0.2, 0.9, 1, 1}
	for i := range want {
		if q[i] != want[i] {
			t.Fatalf("Quantiles = %v, want %v", q, want)
		}
	}
	if Quantiles(nil) != nil {
		t.Fatal("quantiles of nothing")
	}
	for _, c := range []struct {
		s float64
		b int
	}{{-1, 0}, {-2, 0}, {1, HistBins - 1}, {5, HistBins - 1}, {0, HistBins / 2}, {-0.01, HistBins/2 - 1}} {
		if got := Bin(c.s); got != c.b {
			t.Errorf("Bin(%v) = %d, want %d", c.s, got, c.b)
		}
	}
}

func sample() *Report {
	r := &Report{Rule: "top", Langs: []string{"de", "en"},
		Conflict:  [][]float64{{1, -0.4}, {-0.4, math.NaN()}},
		Consensus: []float32{1, 2}, Projections: 2,
		Languages: []Language{
			{Lang: "en", Pairs: 3, Kept: 1, Norm: 1, Cutoff: math.NaN(), Histogram: make([]int64, HistBins)},
			{Lang: "de", Pairs: 4, Kept: 2, Norm: 2, Cutoff: 0.1, Quantiles: []float64{math.Inf(1)}, Histogram: make([]int64, HistBins)},
		},
		Counts: []Count{{"select", "en", "kept", 1}, {"generate", "de", "pairs", 4}, {"select", "de", "kept", 2}},
	}
	r.Languages[1].Histogram[Bin(0.3)] = 3
	r.Finish()
	return r
}

func TestMarshalIsValidJSONAndCanonical(t *testing.T) {
	r := sample()
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("report.json is not JSON: %v\n%s", err, b)
	}
	if !strings.Contains(string(b), "null") {
		t.Fatal("NaN cosine should be null")
	}
	if r.Totals["select"]["kept"] != 3 || r.Languages[0].Lang != "de" || r.Counts[0].Stage != "generate" {
		t.Fatalf("Finish: totals %v, first lang %s, first count %v", r.Totals, r.Languages[0].Lang, r.Counts[0])
	}
	b2, _ := sample().Marshal()
	if !bytes.Equal(b, b2) {
		t.Fatal("same report, different bytes")
	}
}

func TestSVGsAreWellFormed(t *testing.T) {
	r := sample()
	for name, svg := range map[string][]byte{"conflict": ConflictSVG(r), "scores": ScoresSVG(r), "kept": KeptSVG(r)} {
		d := xml.NewDecoder(bytes.NewReader(svg))
		n := 0
		for {
			_, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s.svg: %v", name, err)
			}
			n++
		}
		if n < 10 || !bytes.HasPrefix(svg, []byte("<svg")) {
			t.Fatalf("%s.svg: %d tokens", name, n)
		}
	}
	if !bytes.Contains(ConflictSVG(r), []byte("-0.40")) || !bytes.Contains(KeptSVG(r), []byte("50% (2/4)")) {
		t.Fatal("pictures lack their values")
	}
}
