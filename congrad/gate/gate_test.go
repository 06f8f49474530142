package gate

import (
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/congrad/pcgrad"
	"github.com/congrad-beam/congrad/congrad/vec"
)

// world builds per-pair vectors for languages whose pairs scatter around a
// language direction: name -> (center, pairs).
type langSpec struct {
	name   string
	center []float32
	n      int
}

func world(specs []langSpec, noise float64) ([][]float32, []string) {
	var vs [][]float32
	var ls []string
	for i, s := range specs {
		for _, v := range cluster(s.n, s.center, noise, uint64(100+i)) {
			vs = append(vs, v)
			ls = append(ls, s.name)
		}
	}
	return vs, ls
}

func mix(k int, coef map[int]float32) []float32 {
	v := make([]float32, k)
	for j, c := range coef {
		v[j] = c
	}
	return v
}

func TestLeaveOneOut(t *testing.T) {
	dirs := map[string][]float32{"a": {1, 0, 0}, "b": {0.5, 1, 0}, "c": {-1, 0.2, 1}}
	loo, err := LeaveOneOut(dirs, 7)
	if err != nil {
		t.Fatal(err)
	}
	for l := range dirs {
		others := map[string][]float32{}
		for m, g := range dirs {
			if m != l {
				others[m] = g
			}
		}
		want, err := pcgrad.Consensus(others, 7)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(loo[l].Langs, l) || !slices.Equal(loo[l].Consensus, want.Consensus) {
			t.Errorf("leave out %s: langs %v consensus %v, want %v", l, loo[l].Langs, loo[l].Consensus, want.Consensus)
		}
	}
	if _, err := LeaveOneOut(map[string][]float32{"a": {1}}, 1); !errors.Is(err, ErrTooFew) {
		t.Errorf("one language: %v", err)
	}
}

func TestGateLeaveOut(t *testing.T) {
	const k = 24
	shared := mix(k, map[int]float32{0: 1})
	for _, c := range []struct {
		name      string
		specs     []langSpec
		wantGated []string
	}{
		{"no conflict", []langSpec{
			{"h1", mix(k, map[int]float32{0: 1, 1: 0.3}), 150},
			{"h2", mix(k, map[int]float32{0: 1, 2: 0.3}), 150},
			{"l1", mix(k, map[int]float32{0: 0.4}), 60},
		}, nil},
		{"two conflict languages that agree with each other", []langSpec{
			{"c1", mix(k, map[int]float32{0: -1, 5: 0.6}), 150},
			{"c2", mix(k, map[int]float32{0: -1, 5: 0.6}), 150},
			{"h1", shared, 150}, {"h2", shared, 150}, {"h3", shared, 150},
			{"l1", mix(k, map[int]float32{0: 0.5}), 60},
		}, []string{"c1", "c2"}},
		{"one opposed language", []langSpec{
			{"h1", shared, 100}, {"h2", shared, 100},
			{"x", mix(k, map[int]float32{0: -1}), 100},
		}, []string{"x"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			vs, ls := world(c.specs, 1)
			g, err := GateLeaveOut(vs, ls, DefaultGateOptions())
			if err != nil {
				t.Fatal(err)
			}
			var gated []string
			for _, lg := range g.Langs {
				if lg.Gated {
					gated = append(gated, lg.Lang)
					if lg.Reason != ReasonGatedLeaveOut || !(lg.Cos.Hi < 0) {
						t.Errorf("%s gated with %+v", lg.Lang, lg)
					}
				} else if lg.Reason != ReasonOpenLeaveOut || !(lg.Cos.Hi >= 0) {
					t.Errorf("%s open with %+v", lg.Lang, lg)
				}
			}
			if !slices.Equal(gated, c.wantGated) {
				t.Errorf("gated %v, want %v (%+v)", gated, c.wantGated, g.Langs)
			}
			// Against the PCGrad consensus of the others, a language can only
			// look more agreeable than against their plain sum when a
			// like-minded conflict language shields it.
			o := DefaultGateOptions()
			o.Reference = RefPCGrad
			gp, err := GateLeaveOut(vs, ls, o)
			if err != nil {
				t.Fatal(err)
			}
			for i, lg := range gp.Langs {
				if slices.Contains(c.wantGated, lg.Lang) && len(c.wantGated) > 1 && !(lg.Cos.Value > g.Langs[i].Cos.Value) {
					t.Errorf("%s: cos vs PCGrad of others %v, vs their sum %v: expected the shielding effect", lg.Lang, lg.Cos.Value, g.Langs[i].Cos.Value)
				}
			}
			for _, l := range gated {
				if slices.Contains(g.Consensus.Langs, l) {
					t.Errorf("gated %s is in the consensus %v", l, g.Consensus.Langs)
				}
				if _, ok := g.LeaveOut[l]; ok {
					t.Errorf("gated %s has a scoring target", l)
				}
			}
			for _, l := range g.Consensus.Langs {
				lo, ok := g.LeaveOut[l]
				if !ok || slices.Contains(lo.Langs, l) || len(lo.Langs) != len(g.Consensus.Langs)-1 {
					t.Errorf("open %s: leave-out target over %v (consensus over %v)", l, lo.Langs, g.Consensus.Langs)
				}
			}
			// The open languages agree with the consensus.
			for _, l := range g.Consensus.Langs {
				dirs, _, _ := Means(vs, ls)
				if c, _ := vec.Cosine(dirs[l], g.Consensus.Consensus); !(c > 0) {
					t.Errorf("open %s: cos with consensus %v", l, c)
				}
			}
		})
	}
}

// Two mutually opposed languages each conflict with "the others": gating
// both would leave nothing, so the gate stands down and says so.
func TestGateLeaveOutAllGatedStandsDown(t *testing.T) {
	vs, ls := world([]langSpec{{"a", axis(8, 0, 1), 50}, {"b", axis(8, 0, -1), 50}}, 0.3)
	g, err := GateLeaveOut(vs, ls, DefaultGateOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, lg := range g.Langs {
		if lg.Gated || lg.Reason == ReasonOpenLeaveOut || !(lg.Cos.Hi < 0) {
			t.Errorf("%+v", lg)
		}
	}
	if len(g.Consensus.Langs) != 2 {
		t.Errorf("consensus over %v", g.Consensus.Langs)
	}
	if _, err := GateLeaveOut(vs, ls, GateOptions{Boot: DefaultBootOptions(), Reference: "median"}); !errors.Is(err, ErrOptions) {
		t.Errorf("unknown reference: %v", err)
	}
	one, err := GateLeaveOut(vs[:50], ls[:50], DefaultGateOptions())
	if err != nil || one.Langs[0].Gated || one.Langs[0].Reason != ReasonOpenAlone {
		t.Errorf("single language: %+v %v", one.Langs, err)
	}
}

func TestGateAnchor(t *testing.T) {
	const k = 16
	vs, ls := world([]langSpec{
		{"h1", mix(k, map[int]float32{0: 1, 1: 0.5}), 100},
		{"l1", mix(k, map[int]float32{0: 0.3}), 40},
		{"c1", mix(k, map[int]float32{0: -1, 1: 0.5}), 100},
	}, 1)
	anchor := axis(k, 0, 5)
	for _, include := range []bool{true, false} {
		o := DefaultGateOptions()
		o.IncludeAnchor = include
		g, err := GateAnchor(vs, ls, anchor, o)
		if err != nil {
			t.Fatal(err)
		}
		for _, lg := range g.Langs {
			want := lg.Lang == "c1"
			if lg.Gated != want || lg.Reason != pick(want, ReasonGatedAnchor, ReasonOpenAnchor) {
				t.Errorf("include=%v: %+v", include, lg)
			}
		}
		if got := slices.Contains(g.Consensus.Langs, AnchorLang); got != include {
			t.Errorf("include=%v: consensus over %v", include, g.Consensus.Langs)
		}
		if include {
			// The anchor enters with the mean norm of the open directions.
			dirs, _, _ := Means(vs, ls)
			want := (vec.Norm(dirs["h1"]) + vec.Norm(dirs["l1"])) / 2
			i := slices.Index(g.Consensus.Langs, AnchorLang)
			if got := g.Consensus.Norms[i]; math.Abs(got-want) > 1e-5*want {
				t.Errorf("anchor norm %v, want %v", got, want)
			}
		}
	}
	if _, err := GateAnchor(vs, ls, make([]float32, k), DefaultGateOptions()); !errors.Is(err, vec.ErrZero) {
		t.Errorf("zero anchor: %v", err)
	}
	if _, err := GateAnchor(vs, ls, axis(3, 0, 1), DefaultGateOptions()); !errors.Is(err, vec.ErrDim) {
		t.Errorf("short anchor: %v", err)
	}
}

func TestApply(t *testing.T) {
	g := Gating{Langs: []LangGate{{Lang: "a", Reason: ReasonOpenAnchor}, {Lang: "b", Gated: true, Reason: ReasonGatedAnchor}}}
	in := []keep.Verdict{
		{PairID: "1", Lang: "a", Kept: true, Reason: keep.ReasonAboveTau},
		{PairID: "2", Lang: "b", Kept: true, Reason: keep.ReasonAboveTau},
		{PairID: "3", Lang: "b", Kept: false, Reason: keep.ReasonNotAboveTau},
	}
	out := Apply(in, g)
	if !out[0].Kept || out[0].Reason != keep.ReasonAboveTau {
		t.Errorf("open language changed: %+v", out[0])
	}
	for _, v := range out[1:] {
		if v.Kept || v.Reason != ReasonGatedAnchor {
			t.Errorf("gated language: %+v", v)
		}
	}
	if !in[1].Kept || in[1].Reason != keep.ReasonAboveTau {
		t.Errorf("input modified: %+v", in[1])
	}
}
