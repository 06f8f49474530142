package experiment

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/train"
)

func TestTaskValidate(t *testing.T) {
	if err := DefaultTask().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []func(*Task){
		func(t *Task) { t.Langs = nil },
		func(t *Task) { t.Symbols = 1 },
		func(t *Task) { t.Langs[1].Code = t.Langs[0].Code },
		func(t *Task) { t.Langs[0].Flip = 1.5 },
		func(t *Task) { t.Symbols = 20 }, // 9 alphabets of 20 do not fit ASCII
	}
	for i, mut := range bad {
		tk := DefaultTask()
		tk.Langs = append([]Lang(nil), tk.Langs...)
		mut(&tk)
		if err := tk.Validate(); err == nil {
			t.Errorf("case %d: want a validation error", i)
		}
	}
}

func TestTrainPairsFollowTheDesign(t *testing.T) {
	tk := DefaultTask()
	a, b := tk.TrainPairs(3), tk.TrainPairs(3)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different pairs")
	}
	if reflect.DeepEqual(a, tk.TrainPairs(4)) {
		t.Fatal("different seeds, same pairs")
	}
	correct, n := map[string]int{}, map[string]int{}
	wt := tk.TrueWeights()
	alphabet := map[string]map[byte]bool{}
	for _, ex := range a {
		n[ex.Lang]++
		li := strings.Index("h1h2h3l1l2c1c2u1u2", ex.Lang) / 2
		syms := func(s string) []int {
			out := make([]int, len(s))
			for i := range s {
				out[i] = int(s[i]) - 33 - li*tk.Symbols
				if out[i] < 0 || out[i] >= tk.Symbols {
					t.Fatalf("%s: byte %q outside its alphabet", ex.Lang, s[i])
				}
			}
			return out
		}
		truthAgrees := quality(wt, syms(ex.Chosen)) > quality(wt, syms(ex.Rejected))
		if truthAgrees != ex.LabelCorrect {
			t.Fatalf("%s: LabelCorrect=%v but the shared rule says %v", ex.ID, ex.LabelCorrect, truthAgrees)
		}
		if truthAgrees {
			correct[ex.Lang]++
		}
		if alphabet[ex.Lang] == nil {
			alphabet[ex.Lang] = map[byte]bool{}
		}
		for i := range ex.Chosen {
			alphabet[ex.Lang][ex.Chosen[i]] = true
		}
	}
	for _, l := range tk.Langs {
		if n[l.Code] != l.Pairs {
			t.Errorf("%s: %d pairs, want %d", l.Code, n[l.Code], l.Pairs)
		}
		if l.Pairs == 0 {
			continue
		}
		want := 1 - l.Flip
		if l.Conflict {
			want = l.Flip
		}
		got := float64(correct[l.Code]) / float64(n[l.Code])
		if math.Abs(got-want) > 4*math.Sqrt(want*(1-want)/float64(l.Pairs))+0.01 {
			t.Errorf("%s: label agrees with the shared rule for %.3f of pairs, want ≈ %.3f", l.Code, got, want)
		}
	}
	for l1, a1 := range alphabet {
		for l2, a2 := range alphabet {
			for c := range a1 {
				if l1 != l2 && a2[c] {
					t.Errorf("languages %s and %s share byte %q", l1, l2, c)
				}
			}
		}
	}
	shared, own := tk.EvalSet()
	if len(shared) != len(tk.Langs)*tk.EvalPairs || len(own) != 2*tk.EvalPairs {
		t.Errorf("eval set sizes %d, %d", len(shared), len(own))
	}
}

// Three languages share one direction; in each, every fourth pair points the
// other way (a flipped label). No language-level conflict, so g* ∝ the shared
// direction and exactly the flipped pairs must be dropped under positive.
func TestSelectPairsDropsFlippedPairs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dir := make([]float32, 64)
	for i := range dir {
		dir[i] = float32(rng.NormFloat64())
	}
	var vecs [][]float32
	var ids, langs []string
	var flipped []bool
	for i := 0; i < 96; i++ {
		l := []string{"a", "b", "c"}[i%3]
		sign := float32(1)
		if (i/3)%4 == 0 {
			sign = -1
		}
		v := make([]float32, 64)
		for j := range v {
			v[j] = sign*dir[j] + 0.3*float32(rng.NormFloat64())
		}
		vecs, ids, langs = append(vecs, v), append(ids, fmt.Sprintf("%s%02d", l, i)), append(langs, l)
		flipped = append(flipped, sign < 0)
	}
	steps := gradSteps(len(vecs), 8, 1)
	for _, accum := range []string{"mean", "ema"} {
		sel, err := selectPairs(vecs, ids, langs, steps, SelectOptions{Accum: accum, Gamma: 0.9, Keep: keep.Options{Rule: keep.Positive}, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range sel.Kept {
			if k == flipped[i] {
				t.Errorf("%s: pair %s kept=%v (flipped=%v) score %.3f", accum, ids[i], k, flipped[i], sel.Scores[i])
			}
		}
		if sel.PCGrad.Projections != 0 {
			t.Errorf("%s: %d projections fired without conflicts", accum, sel.PCGrad.Projections)
		}
	}
	sel, err := selectPairs(vecs, ids, langs, steps, SelectOptions{Keep: keep.Options{Rule: keep.Top, Rho: 0.5}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	kept := map[string]int{}
	for i, k := range sel.Kept {
		if k {
			kept[langs[i]]++
		}
	}
	if kept["a"] != 16 || kept["b"] != 16 || kept["c"] != 16 {
		t.Errorf("top ρ=0.5: kept %v, want 16 per language", kept)
	}
	// A language pointing the other way is a conflict: projections fire and
	// the conflict map shows a negative cosine.
	for i := range vecs {
		if langs[i] == "c" {
			for j := range vecs[i] {
				vecs[i][j] = -vecs[i][j]
			}
		}
	}
	sel, err = selectPairs(vecs, ids, langs, steps, SelectOptions{Keep: keep.Options{Rule: keep.Positive}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if sel.PCGrad.Projections == 0 || sel.PCGrad.Cosine[0][2] > -0.5 {
		t.Errorf("conflicting language: %d projections, cos(a,c)=%.3f", sel.PCGrad.Projections, sel.PCGrad.Cosine[0][2])
	}
	if _, err := selectPairs(vecs, ids, langs, steps, SelectOptions{Accum: "median"}); err == nil {
		t.Error("unknown accumulator: want an error")
	}
	if _, err := selectPairs(nil, nil, nil, nil, SelectOptions{}); err == nil {
		t.Error("no vectors: want an error")
	}
}

// The gaussian matrix path must equal the exact Sketcher on the same gradients.
func TestSketchAllMatchesSketcher(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	pg := &train.PairGradients{Names: []string{"p.lora_A", "p.lora_B"}, Sizes: []int{6, 10}}
	for i := 0; i < 3; i++ {
		g := make([]float32, 16)
		for j := 6; j < 16; j++ { // A factor zero, as at fresh LoRA
			g[j] = float32(rng.NormFloat64())
		}
		pg.Grads = append(pg.Grads, g)
	}
	for _, m := range []sketch.Method{sketch.CountSketch, sketch.Gaussian} {
		spec := sketch.Spec{Method: m, K: 32, Seed: 9, Version: sketch.Version}
		got, err := sketchAll(pg, spec)
		if err != nil {
			t.Fatal(err)
		}
		sk, err := sketch.New(spec)
		if err != nil {
			t.Fatal(err)
		}
		for i, g := range pg.Grads {
			sk.Reset()
			if err := sk.Add("p.lora_A", 0, g[:6]); err != nil {
				t.Fatal(err)
			}
			if err := sk.Add("p.lora_B", 0, g[6:]); err != nil {
				t.Fatal(err)
			}
			want := sk.Sketch()
			for r := range want {
				if math.Abs(float64(got[i][r]-want[r])) > 1e-5*(1+math.Abs(float64(want[r]))) {
					t.Fatalf("%s pair %d row %d: %g vs Sketcher %g", m, i, r, got[i][r], want[r])
				}
			}
		}
	}
}
