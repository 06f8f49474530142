package experiment

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"syscall"
	"time"

	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/gpu/model"
	"github.com/congrad-beam/congrad/train"
)

// Task v2: the self-rewarding loop. Per arm and round t = 0..R−1:
// sample Candidates responses per fresh prompt from M_t (alphabet-restricted),
// judge them (round 0: the synthetic Bradley–Terry judge; later rounds: M_t's
// implicit reward log M_t(y|x) − log π_0(y|x)), pair best vs worst, filter
// with the arm's rule, train fresh LoRA on M_t (M_t is the DPO reference),
// merge it into M_{t+1}. Round 0 (data, gradients, every arm's selection) is
// shared by the arms of a seed; later rounds follow each arm's own model.
// The final model M_R is evaluated by its implicit reward against π_0.

// RoundStat is one round of one arm's trajectory.
type RoundStat struct {
	Round int
	Pairs int // pairs formed (prompts with two distinct candidates)
	Train int // pairs kept by the arm's rule
	// Per language: pairs formed, of which the label agrees with the shared
	// rule, ties (equal shared quality), kept, kept with the correct label,
	// kept whose label agrees with the language's own (biased) judge rule.
	PairsBy, PairsCorrect, PairsTie, KeptBy, Correct, OwnCorrect map[string]int
	// Acc is the shared-rule accuracy of M_{t+1} (after this round) on the
	// first EvalRoundPairs held-out pairs per language; the last round is
	// evaluated on all of them (RunResult.Acc).
	Acc     map[string]float64
	Reasons map[string]int // gate variants: pairs by the rule that decided them
	Loss    float64
}

// EvalRoundPairs is the size of the per-round held-out check (per language).
const EvalRoundPairs = 100

// cpuSeconds is the process's user+system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return math.NaN()
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// seedV2 is what every arm of one seed shares.
type seedV2 struct {
	seed    uint64
	base    *model.Model
	engine0 *train.Engine
	smp     *sampler
	eval    *train.Dataset // refs: log π_0
	evalEx  []Example
	own     *train.Dataset
	ownEx   []Example
	evalSub []int // the first EvalRoundPairs of each language in eval
	dev     []Example
	r0      *roundData
	// ConGrad default's keep ratio per round (the fixed-ratio baselines
	// keep that share of their own round's pairs).
	ratio map[int]float64
	warm0 *train.LoRA // the all-pairs arm's round-0 adapters (loss warm-up)
}

// roundData is one round of one trajectory: the model that generated and
// judged the pairs, and what the filters computed on them (lazily).
type roundData struct {
	round    int
	m        *model.Model
	engine   *train.Engine
	examples []Example
	ds       *train.Dataset
	ids      []string
	langs    []string
	// lazily computed
	lo       *train.LoRA
	pg       *train.PairGradients
	sk       [][]float32
	def      *Selection
	anchor   []float32
	variants map[string][]int
	audit    map[string]map[string]int
	gates    []GateRow
	noise    []NoiseRow
}

func roundSeed(seed uint64, round int) uint64 { return seed + uint64(round)<<32 }

func prepareV2(cfg Config, seed uint64) (*seedV2, error) {
	base, err := BuildBase(cfg.Task, cfg.Model, seed)
	if err != nil {
		return nil, fmt.Errorf("seed %d: base model: %w", seed, err)
	}
	e, err := newEngine(cfg, base)
	if err != nil {
		return nil, fmt.Errorf("seed %d: %w", seed, err)
	}
	sv := &seedV2{seed: seed, base: base, engine0: e, ratio: map[int]float64{}}
	if sv.smp, err = newSampler(base.Backend, cfg.Model, 1+cfg.Task.PromptLen+cfg.Task.RespLen, cfg.SamplerRows); err != nil {
		return nil, err
	}
	sv.evalEx, sv.ownEx = cfg.Task.EvalSet()
	if sv.eval, err = e.NewDataset(pluck(sv.evalEx)); err != nil {
		return nil, fmt.Errorf("seed %d: eval set: %w", seed, err)
	}
	if sv.own, err = e.NewDataset(pluck(sv.ownEx)); err != nil {
		return nil, fmt.Errorf("seed %d: own-preference eval set: %w", seed, err)
	}
	if sv.eval.Len() != len(sv.evalEx) || sv.own.Len() != len(sv.ownEx) {
		return nil, fmt.Errorf("seed %d: eval pairs rejected", seed)
	}
	n := map[string]int{}
	for i, p := range sv.eval.Pairs {
		if n[p.Lang] < EvalRoundPairs {
			sv.evalSub = append(sv.evalSub, i)
		}
		n[p.Lang]++
	}
	sv.dev = cfg.Task.DevPairs(seed, cfg.DevPairs, cfg.DevKinds...)
	return sv, nil
}

func newEngine(cfg Config, m *model.Model) (*train.Engine, error) {
	e, err := train.NewEngine(m, train.EngineOptions{Beta: cfg.Beta, LoRA: cfg.LoRA, MaxLen: cfg.Model.MaxPositionEmbeddings})
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	return e, nil
}

// mergeLoRA returns a model whose adapted weights are W + scale·B·A: M_{t+1}.
// The other tensors are shared with m (never written).
func mergeLoRA(m *model.Model, lo *train.LoRA, scale float64, ref string) (*model.Model, error) {
	w := make(map[string]*model.Tensor, len(m.Weights))
	for k, v := range m.Weights {
		w[k] = v
	}
	as := map[string]model.LoRAParam{}
	for _, p := range lo.Params {
		if p.IsA {
			as[p.Base] = p
		}
	}
	for _, b := range lo.Params {
		if b.IsA {
			continue
		}
		a, ok := as[b.Base]
		old := m.Weights[b.Base]
		if !ok || old == nil || len(old.Dims) != 2 || len(a.Dims) != 2 || len(b.Dims) != 2 ||
			b.Dims[0] != old.Dims[0] || a.Dims[1] != old.Dims[1] || a.Dims[0] != b.Dims[1] {
			return nil, fmt.Errorf("merge: adapter %s does not match its weight", b.Name)
		}
		out, in, r := old.Dims[0], old.Dims[1], a.Dims[0]
		nw := &model.Tensor{Dims: slices.Clone(old.Dims), Data: slices.Clone(old.Data)}
		for o := 0; o < out; o++ {
			for i := 0; i < in; i++ {
				s := 0.0
				for k := 0; k < r; k++ {
					s += float64(b.Value[o*r+k]) * float64(a.Value[k*in+i])
				}
				nw.Data[o*in+i] += float32(scale * s)
			}
		}
		w[b.Base] = nw
	}
	return &model.Model{Ref: ref, Config: m.Config, Tok: m.Tok, Backend: m.Backend, Weights: w}, nil
}

// generate samples Candidates responses per fresh prompt of every seen
// language from m and judges them: round 0 with the synthetic
// Bradley–Terry judge, later rounds with m's implicit reward against π_0.
// The uniforms of the sampler and the judge's noise depend only on (seed,
// round, language), the same for every arm (common random numbers).
func (sv *seedV2) generate(cfg Config, m *model.Model, round int) ([]Example, error) {
	t := cfg.Task
	n := t.Candidates
	var langs []promptSpan
	var jobs []sampleJob
	for li, l := range t.Langs {
		if l.Pairs == 0 {
			continue
		}
		prompts := t.Prompts(sv.seed, round, li)
		allowed := make([]int, t.Symbols)
		for s := range allowed {
			allowed[s] = int(t.char(li, s))
		}
		rng := rand.New(rand.NewPCG(t.Seed^sv.seed, uint64(0x73616d00+round*1000+li))) // "sam"
		langs = append(langs, promptSpan{li: li, prompts: prompts, off: len(jobs)})
		for _, p := range prompts {
			ids := make([]int, len(p))
			for k, s := range p {
				ids[k] = int(t.char(li, s))
			}
			for c := 0; c < n; c++ {
				u := make([]float64, t.RespLen)
				for k := range u {
					u[k] = rng.Float64()
				}
				jobs = append(jobs, sampleJob{prompt: ids, allowed: allowed, u: u})
			}
		}
	}
	// One sampler call over every language: full chunks of rows.
	toks, lpT, err := sv.smp.sample(m, jobs)
	if err != nil {
		return nil, fmt.Errorf("round %d: %w", round, err)
	}
	cands := make([][]int, len(toks))
	for _, lj := range langs {
		for i := lj.off; i < lj.off+len(lj.prompts)*n; i++ {
			cands[i] = make([]int, len(toks[i]))
			for k, id := range toks[i] {
				cands[i][k] = id - int(t.char(lj.li, 0))
			}
		}
	}
	var reward []float64
	if round > 0 { // the policy judges: β(log M_t − log π_0)
		lp0, err := sv.logProbs0(cfg, langs, cands)
		if err != nil {
			return nil, err
		}
		reward = make([]float64, len(cands))
		for i := range reward {
			reward[i] = cfg.Beta * (lpT[i] - lp0[i])
		}
	}
	var out []Example
	for _, lj := range langs {
		l := t.Langs[lj.li]
		judge := rand.New(rand.NewPCG(t.Seed^sv.seed, uint64(0x6a756400+lj.li))) // "jud"
		wj := t.JudgeWeights(lj.li)
		for i, p := range lj.prompts {
			o := lj.off + i*n
			cs := cands[o : o+n]
			var b, w int
			var margin float64
			var ok bool
			if round == 0 {
				b, w, margin, ok = BTJudge(judge, wj, l.Temp, cs)
			} else {
				rs := reward[o : o+n]
				b, w, margin, ok = pickBestWorst(distinct(cs), func(k int) float64 { return rs[k] })
			}
			if !ok {
				continue
			}
			out = append(out, t.candidateExample(lj.li, round, i, p, cs[b], cs[w], margin))
		}
	}
	return out, nil
}

// promptSpan is one language's block of candidates: its index, prompts and
// the offset of its first candidate.
type promptSpan struct {
	li      int
	prompts [][]int
	off     int
}

// logProbs0 is log π_0(y|x) of every candidate (train's sequence
// log-probability under the base model), scored two candidates per
// pseudo-pair in one dataset over every language.
func (sv *seedV2) logProbs0(cfg Config, spans []promptSpan, cands [][]int) ([]float64, error) {
	t := cfg.Task
	n := t.Candidates
	var pairs []train.Pair
	var at [][2]int // the two candidates of each pseudo-pair
	for _, sp := range spans {
		for p := range sp.prompts {
			for c := 0; c < n; c += 2 {
				i, j := sp.off+p*n+c, sp.off+p*n+c+1
				if c+1 == n { // odd count: the last candidate twice
					j = i
				}
				pairs = append(pairs, train.Pair{ID: fmt.Sprint(len(pairs)), Lang: t.Langs[sp.li].Code, Prompt: t.text(sp.li, sp.prompts[p]),
					Chosen: t.text(sp.li, cands[i]), Rejected: t.text(sp.li, cands[j])})
				at = append(at, [2]int{i, j})
			}
		}
	}
	ds, err := sv.engine0.NewDataset(pairs)
	if err != nil {
		return nil, err
	}
	if ds.Len() != len(pairs) {
		return nil, fmt.Errorf("logProbs0: %d candidates rejected", len(pairs)-ds.Len())
	}
	out := make([]float64, len(cands))
	for k, ij := range at {
		out[ij[1]] = ds.RefL[k]
		out[ij[0]] = ds.RefW[k]
	}
	return out, nil
}

func newRound(cfg Config, round int, m *model.Model, e *train.Engine, ex []Example) (*roundData, error) {
	rd := &roundData{round: round, m: m, engine: e, examples: ex}
	var err error
	if rd.ds, err = e.NewDataset(pluck(ex)); err != nil {
		return nil, fmt.Errorf("round %d: pairs: %w", round, err)
	}
	if rd.ds.Len() != len(ex) {
		return nil, fmt.Errorf("round %d: %d pairs rejected", round, len(ex)-rd.ds.Len())
	}
	for _, p := range rd.ds.Pairs {
		rd.ids, rd.langs = append(rd.ids, p.ID), append(rd.langs, p.Lang)
	}
	return rd, nil
}

// gradients computes (once) the per-pair gradients at the round's fresh
// LoRA (the adapters its training starts from) and their sketches.
func (rd *roundData) gradients(ctx context.Context, cfg Config, seed uint64) error {
	if rd.sk != nil {
		return nil
	}
	var err error
	if rd.lo, err = rd.engine.NewLoRA(roundSeed(seed, rd.round)); err != nil {
		return err
	}
	if rd.pg, err = rd.engine.PerPairGradients(ctx, rd.ds, rd.lo, 64); err != nil {
		return fmt.Errorf("round %d: per-pair gradients: %w", rd.round, err)
	}
	spec := sketch.Spec{Method: sketch.CountSketch, K: cfg.SketchK, Seed: roundSeed(seed, rd.round), Version: sketch.Version}
	if rd.sk, err = sketchAll(rd.pg, spec); err != nil {
		return fmt.Errorf("round %d: sketch: %w", rd.round, err)
	}
	return nil
}

func (rd *roundData) selection(ctx context.Context, cfg Config, seed uint64, arm string) (Selection, error) {
	if err := rd.gradients(ctx, cfg, seed); err != nil {
		return Selection{}, err
	}
	o := SelectOptions{Accum: "mean", Keep: keep.Options{Rule: keep.Positive}, Seed: roundSeed(seed, rd.round)}
	switch arm {
	case ArmCongrEMA:
		o.Accum, o.Gamma = "ema", cfg.Gamma
	case ArmCongrTop:
		o.Keep = keep.Options{Rule: keep.Top, Rho: cfg.Rho}
	}
	if arm == ArmCongrad && rd.def != nil {
		return *rd.def, nil
	}
	sel, err := selectPairs(rd.sk, rd.ids, rd.langs, gradSteps(len(rd.sk), cfg.GradBatch, roundSeed(seed, rd.round)), o)
	if err != nil {
		return Selection{}, fmt.Errorf("round %d: %s: %w", rd.round, arm, err)
	}
	if arm == ArmCongrad {
		rd.def = &sel
	}
	return sel, nil
}

// devAnchor is the mean sketch of the trusted dev set's gradients at the
// round's fresh LoRA, with the round's sketch spec.
func (rd *roundData) devAnchor(ctx context.Context, cfg Config, sv *seedV2) ([]float32, error) {
	if rd.anchor != nil {
		return rd.anchor, nil
	}
	if err := rd.gradients(ctx, cfg, sv.seed); err != nil {
		return nil, err
	}
	devDS, err := rd.engine.NewDataset(pluck(sv.dev))
	if err != nil || devDS.Len() == 0 {
		return nil, fmt.Errorf("round %d: dev set (%d pairs): %v", rd.round, len(sv.dev), err)
	}
	devPG, err := rd.engine.PerPairGradients(ctx, devDS, rd.lo, 64)
	if err != nil {
		return nil, fmt.Errorf("round %d: dev gradients: %w", rd.round, err)
	}
	devSk, err := sketchAll(devPG, sketch.Spec{Method: sketch.CountSketch, K: cfg.SketchK, Seed: roundSeed(sv.seed, rd.round), Version: sketch.Version})
	if err != nil {
		return nil, err
	}
	rd.anchor = make([]float32, cfg.SketchK)
	for _, v := range devSk {
		for j, x := range v {
			rd.anchor[j] += x / float32(len(devSk))
		}
	}
	return rd.anchor, nil
}

// variantSet runs (once) the congrad/gate variants on the round's sketches.
func (rd *roundData) variantSet(ctx context.Context, cfg Config, sv *seedV2) error {
	if rd.variants != nil {
		return nil
	}
	def, err := rd.selection(ctx, cfg, sv.seed, ArmCongrad)
	if err != nil {
		return err
	}
	anchor, err := rd.devAnchor(ctx, cfg, sv)
	if err != nil {
		return err
	}
	correct := make([]bool, len(rd.examples))
	for i, ex := range rd.examples {
		correct[i] = ex.LabelCorrect
	}
	rd.variants, rd.audit, rd.gates, rd.noise, err = variantSubsets(cfg, roundSeed(sv.seed, rd.round), rd.sk, rd.ids, rd.langs, def, anchor, correct)
	for i := range rd.gates {
		rd.gates[i].Seed, rd.gates[i].Round = sv.seed, rd.round
	}
	for i := range rd.noise {
		rd.noise[i].Seed, rd.noise[i].Round = sv.seed, rd.round
	}
	return err
}

// subset is the arm's rule on the round's pairs: the kept indices and, for
// the gate variants, the pairs by the rule that decided them.
func (sv *seedV2) subset(ctx context.Context, cfg Config, rd *roundData, arm string) ([]int, map[string]int, error) {
	n := len(rd.examples)
	nKeep := func() int {
		// trainedArmsV2 runs ConGrad default before the ratio baselines, so
		// its ratio for this round is known; subset checks it below.
		return int(math.Round(sv.ratio[rd.round] * float64(n)))
	}
	seed := roundSeed(sv.seed, rd.round)
	switch arm {
	case ArmRandom, ArmBalanced, ArmMargin, ArmLoss, ArmOwnMean, ArmLESS:
		if _, ok := sv.ratio[rd.round]; !ok {
			return nil, nil, fmt.Errorf("round %d: %s needs ConGrad default's keep ratio first", rd.round, arm)
		}
	}
	switch arm {
	case ArmAll:
		return seqIdx(n), nil, nil
	case ArmOracle:
		var idx []int
		for i, ex := range rd.examples {
			if ex.LabelCorrect {
				idx = append(idx, i)
			}
		}
		return idx, nil, nil
	case ArmRandom:
		return randomSubset(n, nKeep(), seed), nil, nil
	case ArmBalanced:
		return balancedSubset(rd.langs, nKeep(), seed), nil, nil
	case ArmMargin:
		m := make([]float64, n)
		for i, ex := range rd.examples {
			m[i] = ex.JudgeMargin
		}
		return topN(m, nKeep()), nil, nil
	case ArmLoss:
		warm := sv.warm0
		if rd.round > 0 || warm == nil { // warm-up: all of this round's pairs, same budget
			res, err := rd.engine.Train(ctx, rd.ds, train.Options{LR: cfg.LR, BatchSize: cfg.BatchSize, Steps: stepsPerRound(cfg), Seed: seed})
			if err != nil {
				return nil, nil, fmt.Errorf("round %d: loss warm-up: %w", rd.round, err)
			}
			warm = res.LoRA
		}
		rw, rl, err := rd.engine.Rewards(rd.ds, warm)
		if err != nil {
			return nil, nil, fmt.Errorf("round %d: warm-up losses: %w", rd.round, err)
		}
		negLoss := make([]float64, n)
		for i := range negLoss {
			negLoss[i] = -softplus(-(rw[i] - rl[i]))
		}
		return topN(negLoss, nKeep()), nil, nil
	case ArmOwnMean:
		if err := rd.gradients(ctx, cfg, sv.seed); err != nil {
			return nil, nil, err
		}
		own, err := ownMeanScores(rd.sk, rd.langs)
		if err != nil {
			return nil, nil, err
		}
		return topN(own, nKeep()), nil, nil
	case ArmLESS:
		anchor, err := rd.devAnchor(ctx, cfg, sv)
		if err != nil {
			return nil, nil, err
		}
		less, err := cosines(rd.sk, anchor)
		if err != nil {
			return nil, nil, err
		}
		return topN(less, nKeep()), nil, nil
	case ArmCongrad, ArmCongrEMA, ArmCongrTop:
		sel, err := rd.selection(ctx, cfg, sv.seed, arm)
		if err != nil {
			return nil, nil, err
		}
		if arm == ArmCongrad {
			sv.ratio[rd.round] = float64(len(indices(sel.Kept))) / float64(max(n, 1))
		}
		return indices(sel.Kept), nil, nil
	case ArmNoise, ArmGate, ArmGroup, ArmAnchor, ArmLOO, ArmGateGrp:
		if err := rd.variantSet(ctx, cfg, sv); err != nil {
			return nil, nil, err
		}
		return rd.variants[arm], rd.audit[arm], nil
	}
	return nil, nil, fmt.Errorf("arm %q has no v2 rule", arm)
}

func seqIdx(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func stepsPerRound(cfg Config) int { return max(cfg.Steps/max(cfg.Task.Rounds, 1), 1) }

// evalV2 is the shared-rule (and own-preference) accuracy of model m by its
// implicit reward against π_0 on the pairs idx of the eval set (nil: all).
func (sv *seedV2) evalV2(cfg Config, m *model.Model, e *train.Engine, idx []int, withOwn bool) (acc, own map[string]float64, err error) {
	score := func(ds *train.Dataset) (map[string]float64, error) {
		sub := ds
		if idx != nil && ds == sv.eval {
			sub = ds.Subset(idx)
		}
		cur, err := e.NewDataset(sub.Pairs)
		if err != nil {
			return nil, err
		}
		out, n := map[string]float64{}, map[string]int{}
		for i, p := range sub.Pairs {
			rw, rl := cur.RefW[i]-sub.RefW[i], cur.RefL[i]-sub.RefL[i]
			n[p.Lang]++
			switch {
			case rw > rl:
				out[p.Lang]++
			case rw == rl:
				out[p.Lang] += 0.5
			}
		}
		for l := range n {
			out[l] /= float64(n[l])
		}
		return out, nil
	}
	if acc, err = score(sv.eval); err != nil {
		return nil, nil, err
	}
	if withOwn && sv.own.Len() > 0 {
		if own, err = score(sv.own); err != nil {
			return nil, nil, err
		}
	}
	return acc, own, nil
}

// runArmV2 runs one arm's self-rewarding trajectory on one seed.
func runArmV2(ctx context.Context, cfg Config, sv *seedV2, arm string, res *Results, log io.Writer) (RunResult, error) {
	t0, c0 := time.Now(), cpuSeconds()
	r := RunResult{Arm: arm, Seed: sv.seed, KeptBy: map[string]int{}, Correct: map[string]int{}}
	m, e, rd := sv.base, sv.engine0, sv.r0
	for round := 0; round < cfg.Task.Rounds; round++ {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		if round > 0 {
			ex, err := sv.generate(cfg, m, round)
			if err != nil {
				return r, fmt.Errorf("arm %s seed %d: %w", arm, sv.seed, err)
			}
			if rd, err = newRound(cfg, round, m, e, ex); err != nil {
				return r, fmt.Errorf("arm %s seed %d: %w", arm, sv.seed, err)
			}
		}
		idx, reasons, err := sv.subset(ctx, cfg, rd, arm)
		if err != nil {
			return r, fmt.Errorf("arm %s seed %d: %w", arm, sv.seed, err)
		}
		if round > 0 { // later rounds' gate decisions belong to the arm that made them
			switch arm {
			case ArmGate, ArmAnchor:
				kind := map[string]string{ArmGate: "leave-out", ArmAnchor: "anchor"}[arm]
				for _, g := range rd.gates {
					if g.Gate == kind {
						g.Arm = arm
						res.Gates = append(res.Gates, g)
					}
				}
			case ArmNoise:
				for _, nr := range rd.noise {
					nr.Arm = arm
					res.Noise = append(res.Noise, nr)
				}
			}
		}
		st := RoundStat{Round: round, Pairs: len(rd.examples), Train: len(idx), Reasons: reasons,
			PairsBy: map[string]int{}, PairsCorrect: map[string]int{}, PairsTie: map[string]int{},
			KeptBy: map[string]int{}, Correct: map[string]int{}, OwnCorrect: map[string]int{}}
		for _, ex := range rd.examples {
			st.PairsBy[ex.Lang]++
			if ex.LabelCorrect {
				st.PairsCorrect[ex.Lang]++
			}
			if ex.TrueGap == 0 {
				st.PairsTie[ex.Lang]++
			}
		}
		for _, i := range idx {
			ex := rd.examples[i]
			st.KeptBy[ex.Lang]++
			r.KeptBy[ex.Lang]++
			if ex.LabelCorrect {
				st.Correct[ex.Lang]++
				r.Correct[ex.Lang]++
			}
			if ex.OwnCorrect {
				st.OwnCorrect[ex.Lang]++
			}
		}
		r.Train += len(idx)
		if len(idx) == 0 {
			return r, fmt.Errorf("arm %s seed %d round %d: no training pairs selected", arm, sv.seed, round)
		}
		tr, err := e.Train(ctx, rd.ds.Subset(idx), train.Options{LR: cfg.LR, BatchSize: cfg.BatchSize, Steps: stepsPerRound(cfg), Seed: roundSeed(sv.seed, round)})
		if err != nil {
			return r, fmt.Errorf("arm %s seed %d round %d: %w", arm, sv.seed, round, err)
		}
		if round == 0 && arm == ArmAll {
			sv.warm0 = tr.LoRA
		}
		st.Loss = tr.Losses[len(tr.Losses)-1]
		r.Loss = st.Loss
		if m, err = mergeLoRA(m, tr.LoRA, e.Opts.LoRA.Scale(), fmt.Sprintf("%s+%s:r%d", sv.base.Ref, arm, round+1)); err != nil {
			return r, err
		}
		if e, err = newEngine(cfg, m); err != nil {
			return r, err
		}
		last := round == cfg.Task.Rounds-1
		if last {
			if r.Acc, r.OwnAcc, err = sv.evalV2(cfg, m, e, nil, true); err != nil {
				return r, fmt.Errorf("arm %s seed %d: eval: %w", arm, sv.seed, err)
			}
			st.Acc = r.Acc
		} else if st.Acc, _, err = sv.evalV2(cfg, m, e, sv.evalSub, false); err != nil {
			return r, fmt.Errorf("arm %s seed %d round %d: eval: %w", arm, sv.seed, round, err)
		}
		r.Rounds = append(r.Rounds, st)
	}
	r.Wall, r.CPU = time.Since(t0).Seconds(), cpuSeconds()-c0
	return r, nil
}

// trainedArmsV2 orders the arms for a v2 seed: all pairs first (the loss
// warm-up of round 0), ConGrad default second (its keep ratio per round is
// the fixed-ratio baselines' budget), then the rest in table order.
func trainedArmsV2(cfg Config) ([]string, error) {
	keys := cfg.Arms
	if len(keys) == 0 {
		keys = ArmsV2
	}
	want := map[string]bool{}
	for _, k := range keys {
		a, ok := ArmKeys[k]
		if !ok {
			return nil, fmt.Errorf("experiment: unknown arm %q", k)
		}
		want[a] = true
	}
	for _, a := range []string{ArmRandom, ArmMargin, ArmBalanced, ArmLoss, ArmOwnMean, ArmLESS} {
		if want[a] {
			want[ArmCongrad] = true // its keep ratio per round is their budget
		}
	}
	var out []string
	for _, a := range []string{ArmAll, ArmCongrad} {
		if want[a] {
			out = append(out, a)
		}
	}
	for _, a := range Arms {
		if want[a] && a != ArmAll && a != ArmCongrad {
			out = append(out, a)
		}
	}
	return out, nil
}

// runSeedV2 runs every arm's trajectory on one seed.
func runSeedV2(ctx context.Context, cfg Config, seed uint64, res *Results, log io.Writer) error {
	t0, c0 := time.Now(), cpuSeconds()
	sv, err := prepareV2(cfg, seed)
	if err != nil {
		return err
	}
	ex, err := sv.generate(cfg, sv.base, 0)
	if err != nil {
		return fmt.Errorf("seed %d: %w", seed, err)
	}
	if sv.r0, err = newRound(cfg, 0, sv.base, sv.engine0, ex); err != nil {
		return fmt.Errorf("seed %d: %w", seed, err)
	}
	// Round-0 diagnostics (shared data): gates, noise fits, the conflict map.
	if err := sv.r0.variantSet(ctx, cfg, sv); err != nil {
		return fmt.Errorf("seed %d: %w", seed, err)
	}
	res.Gates = append(res.Gates, sv.r0.gates...)
	res.Noise = append(res.Noise, sv.r0.noise...)
	def := *sv.r0.def
	res.Diags = append(res.Diags, diagnose(DiagSketch, seed, def, ex))
	res.Conflicts = append(res.Conflicts, ConflictMap{Seed: seed, Langs: def.PCGrad.Langs, Cosine: def.PCGrad.Cosine, Projections: def.PCGrad.Projections})
	res.GradDim, res.GradNonZero = len(sv.r0.pg.Grads[0]), nonZeroCoords(sv.r0.pg.Grads)
	res.SeedSetup = append(res.SeedSetup, SeedCost{Seed: seed, Wall: time.Since(t0).Seconds(), CPU: cpuSeconds() - c0})
	logf(log, "seed %d: round 0: %d pairs, shared setup %.1fs wall %.1fs CPU\n", seed, len(ex), time.Since(t0).Seconds(), cpuSeconds()-c0)
	arms, err := trainedArmsV2(cfg)
	if err != nil {
		return err
	}
	if res.Audit == nil {
		res.Audit = map[string]map[string]int{}
	}
	for _, arm := range arms {
		r, err := runArmV2(ctx, cfg, sv, arm, res, log)
		if err != nil {
			return err
		}
		for _, st := range r.Rounds {
			if len(st.Reasons) == 0 {
				continue
			}
			if res.Audit[arm] == nil {
				res.Audit[arm] = map[string]int{}
			}
			for why, c := range st.Reasons {
				res.Audit[arm][why] += c
			}
		}
		res.Runs = append(res.Runs, r)
		logf(log, "seed %d: %-48s %5d pairs over %d rounds  loss %.3f  %.1fs wall %.1fs CPU\n", seed, arm, r.Train, len(r.Rounds), r.Loss, r.Wall, r.CPU)
	}
	return nil
}

// SeedCost is the shared per-seed setup cost (base model, eval sets,
// round-0 data, gradients and selections).
type SeedCost struct {
	Seed      uint64
	Wall, CPU float64
}
