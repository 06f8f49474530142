package keep

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

var nan, inf = math.NaN(), math.Inf(1)

// short renders verdicts as "id:rank:K/D" for compact table expectations.
func short(vs []Verdict) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		d := "D"
		if v.Kept {
			d = "K"
		}
		out[i] = fmt.Sprintf("%s:%d:%s", v.PairID, v.Rank, d)
	}
	return out
}

func TestDecideTable(t *testing.T) {
	en := func(id string, s float64) Scored { return Scored{PairID: id, Lang: "en", Score: s} }
	de := func(id string, s float64) Scored { return Scored{PairID: id, Lang: "de", Score: s} }
	cases := []struct {
		name  string
		items []Scored
		opt   Options
		want  []string
	}{
		{"positive default", []Scored{en("a", 0.5), en("b", -0.1), en("c", 0)}, DefaultOptions(),
			[]string{"a:1:K", "c:2:D", "b:3:D"}},
		{"positive tau", []Scored{en("a", 0.5), en("b", 0.2), en("c", 0.3)}, Options{Rule: Positive, Tau: 0.25},
			[]string{"a:1:K", "c:2:K", "b:3:D"}},
		{"zero rule is positive", []Scored{en("a", 0.1)}, Options{}, []string{"a:1:K"}},
		{"negative tau keeps some negatives", []Scored{en("a", -0.05), en("b", -0.2)}, Options{Tau: -0.1},
			[]string{"a:1:K", "b:2:D"}},
		{"ties by pair id", []Scored{en("z", 0.5), en("m", 0.5), en("a", 0.5), en("b", 0.9)}, Options{Rule: Top, Rho: 0.5},
			[]string{"b:1:K", "a:2:K", "m:3:D", "z:4:D"}},
		{"nan and inf dropped, unranked, last", []Scored{en("a", nan), en("b", 0.1), en("c", inf), en("d", -inf), en("e", 0.3)}, Options{Rule: Top, Rho: 1},
			[]string{"e:1:K", "b:2:K", "a:0:D", "c:0:D", "d:0:D"}},
		{"top never empties a language", []Scored{en("a", -0.9), en("b", -0.8), de("x", 0.9)}, Options{Rule: Top, Rho: 0.01},
			[]string{"x:1:K", "b:1:K", "a:2:D"}},
		{"top rounds up", []Scored{en("a", 3), en("b", 2), en("c", 1)}, Options{Rule: Top, Rho: 0.5},
			[]string{"a:1:K", "b:2:K", "c:3:D"}},
		{"global top across languages", []Scored{en("a", 0.9), en("b", 0.8), de("x", 0.1), de("y", 0.2)}, Options{Rule: GlobalTop, Rho: 0.5},
			[]string{"y:1:D", "x:2:D", "a:1:K", "b:2:K"}},
		{"global top tie at the cutoff by pair id", []Scored{en("b", 0.5), de("a", 0.5), de("c", 0.1)}, Options{Rule: GlobalTop, Rho: 0.3},
			[]string{"a:1:K", "c:2:D", "b:1:D"}},
		{"global top ignores nan in the count", []Scored{en("a", nan), en("b", 0.1), de("c", 0.2)}, Options{Rule: GlobalTop, Rho: 0.5},
			[]string{"c:1:K", "b:1:D", "a:0:D"}},
		{"only nan", []Scored{en("a", nan)}, Options{Rule: GlobalTop, Rho: 1}, []string{"a:0:D"}},
		{"empty input", nil, Options{Rule: Top, Rho: 0.5}, []string{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Decide(c.items, c.opt)
			if err != nil {
				t.Fatal(err)
			}
			if s := short(got); !slices.Equal(s, c.want) {
				t.Fatalf("got %v\nwant %v", s, c.want)
			}
			if len(got) != len(c.items) {
				t.Fatalf("%d verdicts for %d items", len(got), len(c.items))
			}
		})
	}
}

func TestReasons(t *testing.T) {
	items := []Scored{{"a", "en", 0.5}, {"b", "en", -0.5}, {"c", "en", nan}}
	want := map[Rule][]string{
		Positive:  {ReasonAboveTau, ReasonNotAboveTau, ReasonNonFinite},
		Top:       {ReasonTop, ReasonBelowTop, ReasonNonFinite},
		GlobalTop: {ReasonGlobalTop, ReasonBelowGlobal, ReasonNonFinite},
	}
	for rule, reasons := range want {
		vs, err := Decide(items, Options{Rule: rule, Rho: 0.5})
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range vs {
			if v.Reason != reasons[i] {
				t.Errorf("%s %s: reason %q, want %q", rule, v.PairID, v.Reason, reasons[i])
			}
			if v.Score != items[i].Score && !math.IsNaN(v.Score) {
				t.Errorf("score not carried: %v", v)
			}
		}
	}
}

func TestKeepCount(t *testing.T) {
	cases := []struct {
		n    int
		rho  float64
		want int
	}{
		{0, 0.5, 0}, {5, 0, 0}, {5, -1, 0}, {5, nan, 0}, {1, 0.001, 1}, {1000, 0.0001, 1},
		{10, 0.1, 1}, {10, 0.7, 7}, {10, 0.3, 3}, {3, 0.5, 2}, {4, 0.5, 2}, {7, 1, 7}, {7, 2, 7},
		{100, 0.29, 29}, {1_000_000_001, 0.5, 500_000_001},
	}
	for _, c := range cases {
		if got := KeepCount(c.n, c.rho); got != c.want {
			t.Errorf("KeepCount(%d, %v) = %d, want %d", c.n, c.rho, got, c.want)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	bad := []Options{{Rule: "best"}, {Rule: Positive, Tau: nan}, {Rule: Positive, Tau: inf},
		{Rule: Top, Rho: 0}, {Rule: Top, Rho: 1.5}, {Rule: GlobalTop, Rho: nan}, {Rule: GlobalTop, Rho: -0.1}}
	for _, o := range bad {
		if err := o.Validate(); !errors.Is(err, ErrOptions) {
			t.Errorf("%+v: %v", o, err)
		}
		if _, err := Decide([]Scored{{"a", "en", 1}}, o); !errors.Is(err, ErrOptions) {
			t.Errorf("Decide %+v: %v", o, err)
		}
	}
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatal(err)
	}
	if o := DefaultOptions(); o.Rule != Positive || o.Tau != 0 || o.Rho != 0.5 {
		t.Fatalf("defaults %+v", o)
	}
}

func TestInputErrors(t *testing.T) {
	if _, err := Decide([]Scored{{"a", "en", 1}, {"a", "en", 2}}, DefaultOptions()); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("duplicate: %v", err)
	}
	// The same PairID in two languages is two pairs.
	if _, err := Decide([]Scored{{"a", "en", 1}, {"a", "de", 2}}, DefaultOptions()); err != nil {
		t.Fatalf("same id, different languages: %v", err)
	}
	if _, err := DecideLanguage([]Scored{{"a", "en", 1}, {"b", "de", 2}}, DefaultOptions()); !errors.Is(err, ErrMixedLanguages) {
		t.Fatalf("mixed: %v", err)
	}
	if _, err := DecideLanguage([]Scored{{"a", "en", 1}}, Options{Rule: GlobalTop, Rho: 0.5}); !errors.Is(err, ErrOptions) {
		t.Fatalf("global-top per language: %v", err)
	}
	if _, err := GlobalCutoff(nil, 0); !errors.Is(err, ErrOptions) {
		t.Fatalf("cutoff rho 0: %v", err)
	}
}

// TestDistributedGlobalTopMatchesReference: computing the cutoff once and
// deciding each language separately (what the pipeline does) equals Decide,
// and exactly KeepCount(total, ρ) pairs are kept, on random data with ties.
func TestDistributedGlobalTopMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for trial := 0; trial < 50; trial++ {
		var items []Scored
		n := r.IntN(60)
		for i := 0; i < n; i++ {
			s := float64(r.IntN(7)) / 7 // many ties
			if r.IntN(15) == 0 {
				s = nan
			}
			items = append(items, Scored{PairID: fmt.Sprintf("p%03d", r.IntN(1000)*1000+i), Lang: []string{"en", "de", "zh"}[r.IntN(3)], Score: s})
		}
		rho := 0.05 + 0.95*r.Float64()
		ref, err := Decide(items, Options{Rule: GlobalTop, Rho: rho})
		if err != nil {
			t.Fatal(err)
		}
		cut, _ := GlobalCutoff(items, rho)
		kept := 0
		var dist []Verdict
		for _, l := range []string{"de", "en", "zh"} {
			var li []Scored
			for _, it := range items {
				if it.Lang == l {
					li = append(li, it)
				}
			}
			vs, err := DecideWithCutoff(li, cut)
			if err != nil {
				t.Fatal(err)
			}
			dist = append(dist, vs...)
		}
		for _, v := range dist {
			if v.Kept {
				kept++
			}
		}
		if kept != cut.Keep {
			t.Fatalf("trial %d: kept %d, want %d of %d finite", trial, kept, cut.Keep, cut.Total)
		}
		if !slices.Equal(short(ref), short(dist)) {
			t.Fatalf("trial %d: distributed differs from reference", trial)
		}
	}
}

func FuzzDecideNoPanic(f *testing.F) {
	f.Add([]byte{1, 2, 3}, 0.5, 0.0, uint8(0))
	f.Fuzz(func(t *testing.T, raw []byte, rho, tau float64, rule uint8) {
		var items []Scored
		for i, b := range raw {
			s := float64(int8(b)) / 100
			if b == 255 {
				s = nan
			}
			items = append(items, Scored{PairID: fmt.Sprint(i), Lang: fmt.Sprint(b % 3), Score: s})
		}
		o := Options{Rule: []Rule{Positive, Top, GlobalTop, "x"}[rule%4], Rho: rho, Tau: tau}
		vs, err := Decide(items, o)
		if err == nil && len(vs) != len(items) {
			t.Fatalf("%d verdicts for %d items", len(vs), len(items))
		}
	})
}

func TestEmptyLanguage(t *testing.T) {
	for _, o := range []Options{DefaultOptions(), {Rule: Top, Rho: 0.5}} {
		vs, err := DecideLanguage(nil, o)
		if err != nil || len(vs) != 0 {
			t.Fatalf("%+v: %v %v", o, vs, err)
		}
	}
	vs, err := DecideWithCutoff(nil, Cutoff{})
	if err != nil || len(vs) != 0 {
		t.Fatalf("cutoff: %v %v", vs, err)
	}
	c, err := GlobalCutoff(nil, 0.5)
	if err != nil || c.Keep != 0 || c.Total != 0 || c.Keeps(Scored{"a", "en", 1}) {
		t.Fatalf("empty cutoff %+v %v", c, err)
	}
}

// A language decided in contiguous pieces of its best-first order
// (DecideRanked with each piece's first position) gets the verdicts of
// DecideLanguage / DecideWithCutoff on the whole language, under every rule,
// with ties and non-finite scores.
func TestDecideRankedInPieces(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var items []Scored
	for i := range 500 {
		s := float64(rng.IntN(40))/20 - 1 // many ties
		switch i % 97 {
		case 3:
			s = nan
		case 5:
			s = -inf
		}
		items = append(items, Scored{PairID: fmt.Sprintf("p%03d", rng.IntN(1000)*1000+i), Lang: "en", Score: s})
	}
	sorted := slices.Clone(items)
	slices.SortFunc(sorted, Better)
	nFinite := 0
	for _, it := range sorted {
		if finite(it.Score) {
			nFinite++
		}
	}
	cut, err := GlobalCutoff(items, 0.3)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []Options{{Rule: Positive, Tau: 0.1}, {Rule: Top, Rho: 0.37}, {Rule: GlobalTop, Rho: 0.3}} {
		var whole []Verdict
		if o.Rule == GlobalTop {
			whole, err = DecideWithCutoff(items, cut)
		} else {
			whole, err = DecideLanguage(items, o)
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, size := range []int{1, 7, 128, 500} {
			var got []Verdict
			for first := 0; first < len(sorted); first += size {
				got = append(got, DecideRanked(sorted[first:min(first+size, len(sorted))], first, nFinite, o, cut)...)
			}
			if fmt.Sprint(got) != fmt.Sprint(whole) {
				t.Fatalf("%s in pieces of %d: verdicts differ", o.Rule, size)
			}
		}
	}
}
