package experiment

import (
	"context"
	"io"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/congrad-beam/congrad/train"
)

// The round-0 judge follows Bradley–Terry: for two candidates whose
// judge-quality gap is g, the label is right with probability σ(g/T), so
// errors fall with the gap and rise with the temperature.
func TestBTJudgeNoiseFallsWithGap(t *testing.T) {
	task := DefaultTaskV2()
	w := task.TrueWeights()
	// Two fixed responses per gap: a = all symbol s, b = all symbol r.
	bySym := make([]int, task.Symbols)
	for s := range bySym {
		bySym[s] = s
	}
	rng := rand.New(rand.NewPCG(7, 8))
	const n = 20000
	for _, temp := range []float64{TempHigh, TempLow} {
		prev := 0.0
		for _, pair := range [][2]int{{0, 0}, {1, 0}, {3, 0}} { // increasing gap in symbol steps
			// a: six copies of the symbol of rank 5+pair[0]; b: rank 5−pair[0]−1 … simple: a better than b by gap.
			hi, lo := rankSym(w, 5+pair[0]), rankSym(w, 4-pair[0])
			a, b := []int{hi, hi, hi, hi, hi, hi}, []int{lo, lo, lo, lo, lo, lo}
			gap := quality(w, a) - quality(w, b)
			right := 0
			for i := 0; i < n; i++ {
				best, _, _, ok := BTJudge(rng, w, temp, [][]int{b, a})
				if !ok {
					t.Fatal("two distinct candidates gave no pair")
				}
				if best == 1 {
					right++
				}
			}
			got, want := float64(right)/n, 1/(1+math.Exp(-gap/temp))
			if se := math.Sqrt(want * (1 - want) / n); math.Abs(got-want) > 5*se+1e-3 {
				t.Errorf("T=%g gap=%.2f: P(right) = %.4f, want σ(gap/T) = %.4f", temp, gap, got, want)
			}
			if got < prev {
				t.Errorf("T=%g: accuracy fell from %.3f to %.3f as the gap grew", temp, prev, got)
			}
			prev = got
		}
	}
	// Identical candidates form no pair.
	if _, _, _, ok := BTJudge(rng, w, 1, [][]int{{1, 2}, {1, 2}}); ok {
		t.Error("identical candidates formed a pair")
	}
}

func rankSym(w []float64, r int) int {
	for s := range w {
		k := 0
		for _, v := range w {
			if v < w[s] {
				k++
			}
		}
		if k == r {
			return s
		}
	}
	panic("no symbol of that rank")
}

// A conflict language's judge is the shared rule with its bias symbols
// reversed: same weight elsewhere, opposite on the bias, and it disagrees
// with the shared rule on a minority of pairs (a partial bias, not v1's
// reversal).
func TestPartialBiasJudge(t *testing.T) {
	task := DefaultTaskV2()
	w := task.TrueWeights()
	rng := rand.New(rand.NewPCG(1, 1))
	for li, l := range task.Langs {
		wj := task.JudgeWeights(li)
		if !l.Conflict {
			for s := range w {
				if wj[s] != w[s] {
					t.Fatalf("%s: judge weights differ from the shared rule", l.Code)
				}
			}
			continue
		}
		biased := map[int]bool{}
		for _, r := range l.Bias {
			biased[rankSym(w, r)] = true
		}
		for s := range w {
			switch {
			case biased[s] && wj[s] != -w[s]:
				t.Errorf("%s: symbol %d (biased) weight %v, want %v", l.Code, s, wj[s], -w[s])
			case !biased[s] && wj[s] != w[s]:
				t.Errorf("%s: symbol %d (not biased) weight %v, want %v", l.Code, s, wj[s], w[s])
			}
		}
		disagree, n := 0, 0
		for i := 0; i < 20000; i++ {
			_, a, b := task.genPair(rng, w)
			if qa, qb := quality(wj, a), quality(wj, b); qa != qb {
				n++
				if qa < qb {
					disagree++
				}
			}
		}
		if f := float64(disagree) / float64(n); f < 0.15 || f > 0.45 {
			t.Errorf("%s: judge disagrees with the shared rule on %.2f of pairs, want a partial bias (0.15..0.45)", l.Code, f)
		}
		ex := task.candidateExample(li, 0, 0, []int{0}, []int{rankSym(w, 9)}, []int{rankSym(w, 0)}, 1)
		if !ex.LabelCorrect {
			t.Errorf("%s: best-vs-worst symbol pair not correct under the shared rule", l.Code)
		}
	}
	// v1 keeps its full reversal.
	v1 := DefaultTask()
	for li, l := range v1.Langs {
		if l.Conflict {
			for s, v := range v1.JudgeWeights(li) {
				if v != -w[s] {
					t.Fatalf("v1 %s: judge is not the reversed rule", l.Code)
				}
			}
		}
	}
}

// Merging the adapters gives the model that the adapters computed: the
// merged base's log-probs equal base+LoRA's.
func TestMergeLoRA(t *testing.T) {
	cfg := QuickConfigV2()
	base, err := BuildBase(cfg.Task, cfg.Model, 2)
	if err != nil {
		t.Fatal(err)
	}
	e, err := newEngine(cfg, base)
	if err != nil {
		t.Fatal(err)
	}
	ex := cfg.Task.TrainPairs(2)[:40]
	ds, err := e.NewDataset(pluck(ex))
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Train(context.Background(), ds, train.Options{LR: 1e-2, BatchSize: 8, Steps: 5, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	rw, rl, err := e.Rewards(ds, res.LoRA)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mergeLoRA(base, res.LoRA, e.Opts.LoRA.Scale(), "merged")
	if err != nil {
		t.Fatal(err)
	}
	e2, err := newEngine(cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	ds2, err := e2.NewDataset(pluck(ex))
	if err != nil {
		t.Fatal(err)
	}
	moved := 0.0
	for i := range ex {
		got := cfg.Beta * (ds2.RefW[i] - ds.RefW[i])
		if math.Abs(got-rw[i]) > 1e-4 || math.Abs(cfg.Beta*(ds2.RefL[i]-ds.RefL[i])-rl[i]) > 1e-4 {
			t.Fatalf("pair %d: merged reward %.6f, adapters %.6f", i, got, rw[i])
		}
		moved += math.Abs(rw[i])
	}
	if moved == 0 {
		t.Fatal("training did not move the model; the test checks nothing")
	}
	if base.Weights["model.layers.0.self_attn.q_proj.weight"] == m.Weights["model.layers.0.self_attn.q_proj.weight"] {
		t.Error("merge did not replace the adapted weight")
	}
}

// The rounds loop: every round trains, the model after a round generates
// the next round's data (so arms diverge after round 0 and share round 0),
// later rounds are judged by the policy, and the fixed-ratio baseline keeps
// ConGrad's share of each round.
func TestRoundsLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("trains two arms for two rounds")
	}
	cfg := QuickConfigV2()
	cfg.Task.EvalPairs = 20
	cfg.Arms = []string{"all", "random"}
	res, err := Run(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 3 { // all, congrad (pulled in for the ratio), random
		t.Fatalf("%d runs, want 3 (all, ConGrad default for its ratio, random)", len(res.Runs))
	}
	by := map[string]RunResult{}
	for _, r := range res.Runs {
		by[r.Arm] = r
		if len(r.Rounds) != cfg.Task.Rounds {
			t.Fatalf("%s: %d rounds, want %d", r.Arm, len(r.Rounds), cfg.Task.Rounds)
		}
		if r.CPU <= 0 || r.Wall <= 0 {
			t.Errorf("%s: cost not measured", r.Arm)
		}
	}
	all, cg, rnd := by[ArmAll], by[ArmCongrad], by[ArmRandom]
	if all.Rounds[0].Pairs != cg.Rounds[0].Pairs || all.Rounds[0].PairsCorrect["h1"] != rnd.Rounds[0].PairsCorrect["h1"] {
		t.Error("round 0 is not shared by the arms")
	}
	same := true
	for l, c := range all.Rounds[1].PairsCorrect {
		if rnd.Rounds[1].PairsCorrect[l] != c {
			same = false
		}
	}
	if same && all.Rounds[1].Pairs == rnd.Rounds[1].Pairs {
		t.Error("round 1 data identical for two arms: not generated by each arm's own model")
	}
	for r := range cfg.Task.Rounds {
		want := int(math.Round(float64(cg.Rounds[r].Train) / float64(cg.Rounds[r].Pairs) * float64(rnd.Rounds[r].Pairs)))
		if rnd.Rounds[r].Train != want {
			t.Errorf("round %d: random kept %d, want ConGrad's share %d", r, rnd.Rounds[r].Train, want)
		}
		if all.Rounds[r].Train != all.Rounds[r].Pairs {
			t.Errorf("round %d: all pairs kept %d of %d", r, all.Rounds[r].Train, all.Rounds[r].Pairs)
		}
	}
	// Round 0 is the Bradley–Terry judge: low-resource labels are noisier.
	acc := func(l string) float64 {
		return float64(all.Rounds[0].PairsCorrect[l]) / float64(all.Rounds[0].PairsBy[l])
	}
	if h, lo := (acc("h1")+acc("h2")+acc("h3"))/3, (acc("l1")+acc("l2"))/2; h <= lo {
		t.Errorf("round-0 label accuracy: high-resource %.2f <= low-resource %.2f", h, lo)
	}
}
