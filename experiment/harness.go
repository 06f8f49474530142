package experiment

import (
	"context"
	"fmt"
	"io"
	"math"
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

// Arms lists the arms in table order: joint training, the baselines at
// ConGrad's keep ratio, the ConGrad variants, the oracle.
var Arms = []string{ArmAll, ArmRandom, ArmMargin, ArmBalanced, ArmLoss, ArmOwnMean, ArmLESS,
	ArmCongrad, ArmCongrEMA, ArmCongrTop, ArmNoise, ArmLOO, ArmGate, ArmGateGrp, ArmGroup, ArmAnchor, ArmOracle}

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
	if len(cfg.Seeds) == 0 || cfg.Steps <= 0 || cfg.BatchSize <= 0 || cfg.SketchK <= 0 || cfg.GradBatch <= 0 || cfg.GroupSize <= 0 || cfg.DevPairs <= 0 {
		return nil, fmt.Errorf("experiment: need seeds and positive Steps, BatchSize, SketchK, GradBatch, GroupSize, DevPairs")
	}
	if _, err := trainedArms(cfg); err != nil {
		return nil, err
	}
	start := time.Now()
	res := &Results{Config: cfg}
	for _, seed := range cfg.Seeds {
		run := runSeed
		if cfg.Task.V2() {
			run = runSeedV2
		}
		if err := run(ctx, cfg, seed, res, log); err != nil {
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
	var def Selection
	for _, v := range variants {
		sel, err := selectPairs(sk, ids, langs, steps, v.o)
		if err != nil {
			return fmt.Errorf("seed %d: %s: %w", seed, v.arm, err)
		}
		subsets[v.arm] = indices(sel.Kept)
		if v.arm == ArmCongrad {
			def = sel
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
	correct := make([]bool, n)
	for i := range all {
		all[i] = i
		correct[i] = sd.examples[i].LabelCorrect
		if sd.examples[i].LabelCorrect {
			oracle = append(oracle, i)
		}
	}
	subsets[ArmAll] = all
	subsets[ArmOracle] = oracle
	nKeep := len(subsets[ArmCongrad])
	subsets[ArmRandom] = randomSubset(n, nKeep, seed)
	subsets[ArmBalanced] = balancedSubset(langs, nKeep, seed)
	margins := make([]float64, n)
	for i, ex := range sd.examples {
		margins[i] = ex.JudgeMargin
	}
	subsets[ArmMargin] = topN(margins, nKeep)
	own, err := ownMeanScores(sk, langs)
	if err != nil {
		return fmt.Errorf("seed %d: own-language mean: %w", seed, err)
	}
	subsets[ArmOwnMean] = topN(own, nKeep)

	// The trusted dev set: its gradients at the same fresh LoRA, sketched
	// with the same spec; their mean is the LESS target and the anchor.
	devEx := cfg.Task.DevPairs(seed, cfg.DevPairs, cfg.DevKinds...)
	devDS, err := sd.engine.NewDataset(pluck(devEx))
	if err != nil || devDS.Len() == 0 {
		return fmt.Errorf("seed %d: dev set (%d pairs): %v", seed, len(devEx), err)
	}
	devPG, err := sd.engine.PerPairGradients(ctx, devDS, lo, 64)
	if err != nil {
		return fmt.Errorf("seed %d: dev gradients: %w", seed, err)
	}
	devSk, err := sketchAll(devPG, spec)
	if err != nil {
		return fmt.Errorf("seed %d: dev sketches: %w", seed, err)
	}
	anchor := make([]float32, cfg.SketchK)
	for _, v := range devSk {
		for j, x := range v {
			anchor[j] += x / float32(len(devSk))
		}
	}
	less, err := cosines(sk, anchor)
	if err != nil {
		return fmt.Errorf("seed %d: LESS scores: %w", seed, err)
	}
	subsets[ArmLESS] = topN(less, nKeep)

	vsub, audit, gates, noise, err := variantSubsets(cfg, seed, sk, ids, langs, def, anchor, correct)
	if err != nil {
		return fmt.Errorf("seed %d: %w", seed, err)
	}
	for a, idx := range vsub {
		subsets[a] = idx
	}
	res.Gates = append(res.Gates, gates...)
	res.Noise = append(res.Noise, noise...)
	if res.Audit == nil {
		res.Audit = map[string]map[string]int{}
	}
	for a, m := range audit {
		if res.Audit[a] == nil {
			res.Audit[a] = map[string]int{}
		}
		for why, c := range m {
			res.Audit[a][why] += c
		}
	}

	trained, err := trainedArms(cfg)
	if err != nil {
		return err
	}
	var warm *train.LoRA // the all-pairs run: the loss baseline's warm-up
	for _, arm := range trained {
		t := time.Now()
		if arm == ArmLoss {
			if warm == nil {
				return fmt.Errorf("seed %d: the loss baseline needs the all-pairs run first", seed)
			}
			// Small-loss selection: the pairs the warm-up model fits best
			// (DPO loss −log σ(r_w − r_l) on the training pairs).
			rw, rl, err := sd.engine.Rewards(sd.train, warm)
			if err != nil {
				return fmt.Errorf("seed %d: warm-up losses: %w", seed, err)
			}
			negLoss := make([]float64, n)
			for i := range negLoss {
				negLoss[i] = -softplus(-(rw[i] - rl[i]))
			}
			subsets[ArmLoss] = topN(negLoss, nKeep)
		}
		r, lora, err := trainArm(ctx, cfg, sd, arm, subsets[arm])
		if err != nil {
			return err
		}
		if arm == ArmAll {
			warm = lora
		}
		res.Runs = append(res.Runs, r)
		logf(log, "seed %d: %-48s %4d pairs  loss %.3f  %.1fs\n", seed, arm, r.Train, r.Loss, time.Since(t).Seconds())
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
			r, _, err := trainArm(ctx, cfg, sd, ArmAlonePref+" "+l.Code, idx)
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

// softplus is log(1 + e^x), computed without overflow.
func softplus(x float64) float64 {
	if x > 30 {
		return x
	}
	return math.Log1p(math.Exp(x))
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
