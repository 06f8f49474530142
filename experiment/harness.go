package experiment

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/congrad/vec"
	"github.com/congrad-beam/congrad/train"
)

// Arm names, in table order.
const (
	ArmAll       = "all pairs"
	ArmRandom    = "random (ConGrad's ratio)"
	ArmCongrad   = "ConGrad (mean, positive)"
	ArmCongrEMA  = "ConGrad (ema, positive)"
	ArmCongrTop  = "ConGrad (mean, top)"
	ArmOracle    = "clean oracle"
	ArmAlonePref = "alone"
)

// Arms lists the arms in table order.
var Arms = []string{ArmAll, ArmRandom, ArmCongrad, ArmCongrEMA, ArmCongrTop, ArmOracle}

// FidelityRow is the agreement of sketched with exact ConGrad decisions
// (mean, positive) for one seed, sketch method and k.
type FidelityRow struct {
	Seed      uint64
	Method    string
	K         int
	Agree     float64 // share of all pairs with the same decision
	AgreeBig  float64 // share among pairs with |exact score| >= FidelityMinScore
	NBig      int
	ScoreCorr float64 // Pearson correlation of sketched and exact scores
}

// FidelityMinScore is the |score| below which a decision counts as "tiny" (METHOD.md §7).
const FidelityMinScore = 0.05

// SelectionDiag describes one selection without training it: pairs kept per
// language, how many of them carry the correct label, and the mean score.
type SelectionDiag struct {
	Name      string
	Seed      uint64
	KeptBy    map[string]int
	Correct   map[string]int
	MeanScore map[string]float64
}

// Diagnostic selections (no training).
const (
	DiagSketch    = "ConGrad default (countsketch)"
	DiagExact     = "ConGrad default on exact gradients"
	DiagNoSurgery = "g* = Σ G_l (no PCGrad), positive"
	DiagLeaveOut  = "score vs g* − p_own (PCGrad), positive"
)

// leaveOwnOut rescores every pair against the consensus without its own
// language's projected direction, g* − p_l: how the pair relates to what the
// other languages agree on. A diagnostic, not a ConGrad option.
func leaveOwnOut(sel Selection, vecs [][]float32, langs []string) (Selection, error) {
	out := Selection{Kept: make([]bool, len(vecs)), Scores: make([]float64, len(vecs)), PCGrad: sel.PCGrad}
	targets := map[string]*vec.Target{}
	for li, l := range sel.PCGrad.Langs {
		g := make([]float32, len(sel.PCGrad.Consensus))
		for j, v := range sel.PCGrad.Consensus {
			g[j] = v - sel.PCGrad.Projected[li][j]
		}
		t, err := vec.NewTarget(g)
		if err != nil {
			return Selection{}, fmt.Errorf("leave-out target %s: %w", l, err)
		}
		targets[l] = t
	}
	for i, v := range vecs {
		c, err := targets[langs[i]].Cosine(v)
		if err != nil {
			return Selection{}, fmt.Errorf("leave-out score %d: %w", i, err)
		}
		out.Scores[i], out.Kept[i] = c, c > 0
	}
	return out, nil
}

func diagnose(name string, seed uint64, sel Selection, ex []Example) SelectionDiag {
	d := SelectionDiag{Name: name, Seed: seed, KeptBy: map[string]int{}, Correct: map[string]int{}, MeanScore: map[string]float64{}}
	n := map[string]int{}
	for i, e := range ex {
		n[e.Lang]++
		d.MeanScore[e.Lang] += sel.Scores[i]
		if sel.Kept[i] {
			d.KeptBy[e.Lang]++
			if e.LabelCorrect {
				d.Correct[e.Lang]++
			}
		}
	}
	for l := range d.MeanScore {
		d.MeanScore[l] /= float64(n[l])
	}
	return d
}

// ConflictMap is the PCGrad audit of the default ConGrad run of one seed.
type ConflictMap struct {
	Seed        uint64
	Langs       []string
	Cosine      [][]float64
	Projections int
}

// Run executes the experiment: for every seed, every arm (and, with
// cfg.Alone, every seen language alone) with the same training budget, then
// the fidelity study. Progress goes to log (nil: silent).
func Run(ctx context.Context, cfg Config, log io.Writer) (*Results, error) {
	if err := cfg.Task.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Seeds) == 0 || cfg.Steps <= 0 || cfg.BatchSize <= 0 || cfg.SketchK <= 0 || cfg.GradBatch <= 0 {
		return nil, fmt.Errorf("experiment: need seeds and positive Steps, BatchSize, SketchK, GradBatch")
	}
	start := time.Now()
	res := &Results{Config: cfg}
	for _, seed := range cfg.Seeds {
		if err := runSeed(ctx, cfg, seed, res, log); err != nil {
			return nil, err
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

func runSeed(ctx context.Context, cfg Config, seed uint64, res *Results, log io.Writer) error {
	t0 := time.Now()
	sd, err := prepare(cfg, seed)
	if err != nil {
		return err
	}
	lo, err := sd.engine.NewLoRA(seed)
	if err != nil {
		return fmt.Errorf("seed %d: %w", seed, err)
	}
	pg, err := sd.engine.PerPairGradients(ctx, sd.train, lo, 64)
	if err != nil {
		return fmt.Errorf("seed %d: per-pair gradients: %w", seed, err)
	}
	n := sd.train.Len()
	ids, langs := make([]string, n), make([]string, n)
	for i, p := range sd.train.Pairs {
		ids[i], langs[i] = p.ID, p.Lang
	}
	res.GradDim, res.GradNonZero = len(pg.Grads[0]), nonZeroCoords(pg.Grads)
	steps := gradSteps(n, cfg.GradBatch, seed)
	spec := sketch.Spec{Method: sketch.CountSketch, K: cfg.SketchK, Seed: seed, Version: sketch.Version}
	sk, err := sketchAll(pg, spec)
	if err != nil {
		return fmt.Errorf("seed %d: sketch: %w", seed, err)
	}
	logf(log, "seed %d: %d pairs, %d LoRA params, gradients+sketches %.1fs\n", seed, n, len(pg.Grads[0]), time.Since(t0).Seconds())
	positive := keep.Options{Rule: keep.Positive}
	variants := []struct {
		arm string
		o   SelectOptions
	}{
		{ArmCongrad, SelectOptions{Accum: "mean", Keep: positive, Seed: seed}},
		{ArmCongrEMA, SelectOptions{Accum: "ema", Gamma: cfg.Gamma, Keep: positive, Seed: seed}},
		{ArmCongrTop, SelectOptions{Accum: "mean", Keep: keep.Options{Rule: keep.Top, Rho: cfg.Rho}, Seed: seed}},
	}
	subsets := map[string][]int{}
	for _, v := range variants {
		sel, err := selectPairs(sk, ids, langs, steps, v.o)
		if err != nil {
			return fmt.Errorf("seed %d: %s: %w", seed, v.arm, err)
		}
		subsets[v.arm] = indices(sel.Kept)
		if v.arm == ArmCongrad {
			res.Diags = append(res.Diags, diagnose(DiagSketch, seed, sel, sd.examples))
			loo, err := leaveOwnOut(sel, sk, langs)
			if err != nil {
				return fmt.Errorf("seed %d: %w", seed, err)
			}
			res.Diags = append(res.Diags, diagnose(DiagLeaveOut, seed, loo, sd.examples))
			res.Conflicts = append(res.Conflicts, ConflictMap{Seed: seed, Langs: sel.PCGrad.Langs, Cosine: sel.PCGrad.Cosine, Projections: sel.PCGrad.Projections})
		}
	}
	for _, d := range []struct {
		name string
		vecs [][]float32
		o    SelectOptions
	}{
		{DiagExact, pg.Grads, SelectOptions{Keep: positive, Seed: seed}},
		{DiagNoSurgery, sk, SelectOptions{Keep: positive, Seed: seed, NoSurgery: true}},
	} {
		sel, err := selectPairs(d.vecs, ids, langs, steps, d.o)
		if err != nil {
			return fmt.Errorf("seed %d: %s: %w", seed, d.name, err)
		}
		res.Diags = append(res.Diags, diagnose(d.name, seed, sel, sd.examples))
	}
	all := make([]int, n)
	oracle := []int{}
	for i := range all {
		all[i] = i
		if sd.examples[i].LabelCorrect {
			oracle = append(oracle, i)
		}
	}
	subsets[ArmAll] = all
	subsets[ArmOracle] = oracle
	subsets[ArmRandom] = randomSubset(n, len(subsets[ArmCongrad]), seed)
	for _, arm := range Arms {
		t := time.Now()
		r, err := trainArm(ctx, cfg, sd, arm, subsets[arm])
		if err != nil {
			return err
		}
		res.Runs = append(res.Runs, r)
		logf(log, "seed %d: %-26s %4d pairs  loss %.3f  %.1fs\n", seed, arm, r.Train, r.Loss, time.Since(t).Seconds())
	}
	if cfg.Alone {
		for _, l := range cfg.Task.Langs {
			if l.Pairs == 0 {
				continue
			}
			var idx []int
			for i, ex := range sd.examples {
				if ex.Lang == l.Code {
					idx = append(idx, i)
				}
			}
			r, err := trainArm(ctx, cfg, sd, ArmAlonePref+" "+l.Code, idx)
			if err != nil {
				return err
			}
			res.Alone = append(res.Alone, r)
		}
		logf(log, "seed %d: alone runs done\n", seed)
	}
	return fidelity(cfg, seed, pg, ids, langs, steps, res, log)
}

func fidelity(cfg Config, seed uint64, pg *train.PairGradients, ids, langs []string, steps []int64, res *Results, log io.Writer) error {
	if len(cfg.FidelityKs) == 0 {
		return nil
	}
	t := time.Now()
	o := SelectOptions{Accum: "mean", Keep: keep.Options{Rule: keep.Positive}, Seed: seed}
	exact, err := selectPairs(pg.Grads, ids, langs, steps, o)
	if err != nil {
		return fmt.Errorf("seed %d: exact selection: %w", seed, err)
	}
	for _, m := range []sketch.Method{sketch.CountSketch, sketch.Gaussian} {
		for _, k := range cfg.FidelityKs {
			sk, err := sketchAll(pg, sketch.Spec{Method: m, K: k, Seed: seed, Version: sketch.Version})
			if err != nil {
				return fmt.Errorf("seed %d: fidelity %s k=%d: %w", seed, m, k, err)
			}
			sel, err := selectPairs(sk, ids, langs, steps, o)
			if err != nil {
				return fmt.Errorf("seed %d: fidelity %s k=%d: %w", seed, m, k, err)
			}
			row := FidelityRow{Seed: seed, Method: string(m), K: k, ScoreCorr: pearson(exact.Scores, sel.Scores)}
			agree, agreeBig := 0, 0
			for i := range sel.Kept {
				same := sel.Kept[i] == exact.Kept[i]
				if same {
					agree++
				}
				if abs(exact.Scores[i]) >= FidelityMinScore {
					row.NBig++
					if same {
						agreeBig++
					}
				}
			}
			row.Agree = float64(agree) / float64(len(sel.Kept))
			if row.NBig > 0 {
				row.AgreeBig = float64(agreeBig) / float64(row.NBig)
			}
			res.Fidelity = append(res.Fidelity, row)
		}
	}
	logf(log, "seed %d: fidelity study %.1fs\n", seed, time.Since(t).Seconds())
	return nil
}

func indices(kept []bool) []int {
	var out []int
	for i, k := range kept {
		if k {
			out = append(out, i)
		}
	}
	return out
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func nonZeroCoords(g [][]float32) int {
	n := 0
	for j := range g[0] {
		for i := range g {
			if g[i][j] != 0 {
				n++
				break
			}
		}
	}
	return n
}
