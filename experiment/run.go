package experiment

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/congrad-beam/congrad/gpu/model"
	"github.com/congrad-beam/congrad/train"
)

// Config is one experiment: the task, the model, the training budget shared
// by every arm, and the ConGrad settings.
type Config struct {
	Task      Task
	Model     *model.Config     // base model architecture (gpu/model)
	LoRA      model.LoRAOptions // adapters trained and differentiated
	Seeds     []uint64
	Steps     int     // optimiser steps per training run (same for every arm)
	BatchSize int     // pairs per step
	LR        float64 // Adam learning rate
	Beta      float64 // LP-DPO β (α = 0: plain DPO, all responses have equal length)
	SketchK   int     // ConGrad default sketch size
	Gamma     float64 // ema accumulator γ
	Rho       float64 // top rule: kept fraction per language
	GradBatch int     // mini-batch size of the gradient stage (the ema step τ)
	// FidelityKs are the sketch sizes of the fidelity study (empty: skip it).
	FidelityKs []int
	Alone      bool // also train each seen language alone (the interference check)
	// GroupSize is N of the group-score variant (pairs per group, one language).
	GroupSize int
	// DevPairs clean pairs of the languages of kinds DevKinds form the
	// trusted dev set of the LESS-style baseline and the anchor gate.
	DevPairs int
	DevKinds []string
	// SamplerRows (task v2) is the number of sequences per sampler graph
	// call (0: DefaultSamplerRows); rows never depend on each other.
	SamplerRows int `json:",omitempty"`
	// Arms restricts the trained arms (keys of ArmKeys); empty: all of them.
	// The selections are computed either way.
	Arms []string
}

// DefaultSeeds and DefaultEvalPairs size the full study (issue 13): 15
// seeds for paired 95% intervals, 1000 held-out pairs per language so the
// per-seed accuracy itself has a standard error of about 0.015.
const (
	DefaultSeeds     = 15
	DefaultEvalPairs = 1000
)

// DefaultConfig is `make experiment`.
func DefaultConfig() Config {
	seeds := make([]uint64, DefaultSeeds)
	for i := range seeds {
		seeds[i] = uint64(i + 1)
	}
	t := DefaultTask()
	t.EvalPairs = DefaultEvalPairs
	return Config{
		Task: t, Model: DefaultModel(), LoRA: model.LoRAOptions{Rank: 8, Alpha: 16, Targets: []string{"q_proj", "v_proj"}}, Seeds: seeds,
		Steps: 150, BatchSize: 32, LR: 3e-3, Beta: 0.1, SketchK: 8192, Gamma: 0.9, Rho: 0.5, GradBatch: 32,
		FidelityKs: []int{256, 512, 1024, 2048, 4096, 8192, 16384}, Alone: true,
		GroupSize: 16, DevPairs: 20, DevKinds: []string{"high"},
	}
}

// QuickConfig is the CI smoke test: one seed, a third of the training
// pairs, a short budget, few k. It exercises every arm and every report
// section; its numbers mean nothing.
func QuickConfig() Config {
	c := DefaultConfig()
	c.Seeds = []uint64{1}
	c.Steps = 10
	c.Task.EvalPairs = 50
	c.Task.Langs = slices.Clone(c.Task.Langs)
	for i := range c.Task.Langs {
		c.Task.Langs[i].Pairs /= 3
	}
	c.FidelityKs = []int{256, 8192}
	return c
}

// ArmsV2 are the arms the task-v2 study trains by default: joint training,
// the baselines at ConGrad default's keep ratio, ConGrad default, the
// congrad/gate variants, the clean oracle (ema and top, the v1 accumulator
// and keep-rule variants, are selectable with --arms).
var ArmsV2 = []string{"all", "random", "margin", "balanced", "loss", "ownmean", "less", "congrad",
	"noise", "loo", "gate", "gategroup", "group", "anchor", "oracle"}

// EssentialArmsV2 are the arms the study runs first when time is short.
var EssentialArmsV2 = []string{"all", "random", "congrad", "noise", "gate", "gategroup", "group", "anchor", "ownmean", "margin"}

// DefaultConfigV2 is the issue-13 study on task v2: 15 seeds, 1000 held-out
// pairs per language, 3 rounds × 50 steps × 32 pairs (the v1 budget of 150
// steps split over the rounds), no interference or fidelity runs (the
// fidelity study does not depend on the task; see the v1 tables).
func DefaultConfigV2() Config {
	c := DefaultConfig()
	c.Task = DefaultTaskV2()
	c.Model = DefaultModelV2()
	c.Task.EvalPairs = DefaultEvalPairs
	c.FidelityKs = nil
	c.Alone = false
	c.Arms = slices.Clone(ArmsV2)
	return c
}

// QuickConfigV2 is the CI smoke test of task v2: one seed, a tenth of the
// prompts, 2 rounds of 5 steps, 50 held-out pairs per language.
func QuickConfigV2() Config {
	c := DefaultConfigV2()
	c.Seeds = []uint64{1}
	c.Steps = 10
	c.Task.Rounds = 2
	c.Task.EvalPairs = 50
	c.SamplerRows = 256
	c.Task.Langs = slices.Clone(c.Task.Langs)
	for i := range c.Task.Langs {
		c.Task.Langs[i].Pairs /= 10
	}
	return c
}

// RunResult is one training run of one arm on one seed.
type RunResult struct {
	Arm     string
	Seed    uint64
	Train   int                // training pairs
	KeptBy  map[string]int     // training pairs per language
	Correct map[string]int     // of which the label agrees with the shared rule
	Acc     map[string]float64 // held-out accuracy on the shared rule, per language
	OwnAcc  map[string]float64 // conflict languages: accuracy on their own preference
	Loss    float64            // last training loss
	// Task v2: one entry per self-rewarding round; the wall and CPU seconds
	// of this (seed, arm) beyond the seed's shared setup.
	Rounds    []RoundStat `json:",omitempty"`
	Wall, CPU float64     `json:",omitempty"`
}

// Results is everything the report needs.
type Results struct {
	Config    Config
	Runs      []RunResult
	Alone     []RunResult // one run per seen language trained alone
	Fidelity  []FidelityRow
	Conflicts []ConflictMap // ConGrad default per seed
	Diags     []SelectionDiag
	Gates     []GateRow  // language-level gate decisions (leave-out, anchor)
	Noise     []NoiseRow // per-language noise fits of the noise-aware variant
	// Audit counts, per arm of the gate variants, the pairs by the reason
	// that decided them (summed over seeds).
	Audit   map[string]map[string]int
	Elapsed time.Duration
	// GradDim is the LoRA gradient length; GradNonZero how many coordinates
	// are non-zero in some pair (fresh LoRA: only the B factors).
	GradDim, GradNonZero int
	// SeedSetup (task v2) is each seed's shared setup cost.
	SeedSetup []SeedCost `json:",omitempty"`
}

// seedData is what every arm of one seed shares.
type seedData struct {
	seed     uint64
	engine   *train.Engine
	train    *train.Dataset
	examples []Example
	eval     *train.Dataset
	own      *train.Dataset
}

func prepare(cfg Config, seed uint64) (*seedData, error) {
	base, err := BuildBase(cfg.Task, cfg.Model, seed)
	if err != nil {
		return nil, fmt.Errorf("seed %d: base model: %w", seed, err)
	}
	e, err := train.NewEngine(base, train.EngineOptions{Beta: cfg.Beta, LoRA: cfg.LoRA, MaxLen: cfg.Model.MaxPositionEmbeddings})
	if err != nil {
		return nil, fmt.Errorf("seed %d: engine: %w", seed, err)
	}
	sd := &seedData{seed: seed, engine: e, examples: cfg.Task.TrainPairs(seed)}
	pairs := make([]train.Pair, len(sd.examples))
	for i, ex := range sd.examples {
		pairs[i] = ex.Pair
	}
	if sd.train, err = e.NewDataset(pairs); err != nil {
		return nil, fmt.Errorf("seed %d: training set: %w", seed, err)
	}
	if len(sd.train.Rejected) > 0 {
		return nil, fmt.Errorf("seed %d: %d training pairs rejected, first: %+v", seed, len(sd.train.Rejected), sd.train.Rejected[0])
	}
	shared, own := cfg.Task.EvalSet()
	if sd.eval, err = e.NewDataset(pluck(shared)); err != nil {
		return nil, fmt.Errorf("seed %d: eval set: %w", seed, err)
	}
	if sd.own, err = e.NewDataset(pluck(own)); err != nil {
		return nil, fmt.Errorf("seed %d: own-preference eval set: %w", seed, err)
	}
	return sd, nil
}

func pluck(ex []Example) []train.Pair {
	out := make([]train.Pair, len(ex))
	for i, e := range ex {
		out[i] = e.Pair
	}
	return out
}

// accuracy is the share of pairs whose implicit reward ranks Chosen above
// Rejected, per language; a tie counts one half.
func accuracy(e *train.Engine, ds *train.Dataset, lo *train.LoRA) (map[string]float64, error) {
	out := map[string]float64{}
	if ds.Len() == 0 {
		return out, nil
	}
	rw, rl, err := e.Rewards(ds, lo)
	if err != nil {
		return nil, err
	}
	n := map[string]int{}
	for i, p := range ds.Pairs {
		n[p.Lang]++
		switch {
		case rw[i] > rl[i]:
			out[p.Lang]++
		case rw[i] == rl[i]:
			out[p.Lang] += 0.5
		}
	}
	for l := range out {
		out[l] /= float64(n[l])
	}
	for l := range n {
		out[l] += 0 // languages with zero correct still appear
	}
	return out, nil
}

// trainArm trains on the subset idx of the seed's training pairs and
// evaluates; it also returns the trained adapters (the loss baseline's
// warm-up model is the all-pairs run).
func trainArm(ctx context.Context, cfg Config, sd *seedData, arm string, idx []int) (RunResult, *train.LoRA, error) {
	r := RunResult{Arm: arm, Seed: sd.seed, Train: len(idx), KeptBy: map[string]int{}, Correct: map[string]int{}}
	for _, i := range idx {
		l := sd.examples[i].Lang
		r.KeptBy[l]++
		if sd.examples[i].LabelCorrect {
			r.Correct[l]++
		}
	}
	if len(idx) == 0 {
		return r, nil, fmt.Errorf("arm %s seed %d: no training pairs selected", arm, sd.seed)
	}
	res, err := sd.engine.Train(ctx, sd.train.Subset(idx), train.Options{LR: cfg.LR, BatchSize: cfg.BatchSize, Steps: cfg.Steps, Seed: sd.seed})
	if err != nil {
		return r, nil, fmt.Errorf("arm %s seed %d: %w", arm, sd.seed, err)
	}
	r.Loss = res.Losses[len(res.Losses)-1]
	if r.Acc, err = accuracy(sd.engine, sd.eval, res.LoRA); err != nil {
		return r, nil, fmt.Errorf("arm %s seed %d: eval: %w", arm, sd.seed, err)
	}
	if r.OwnAcc, err = accuracy(sd.engine, sd.own, res.LoRA); err != nil {
		return r, nil, fmt.Errorf("arm %s seed %d: own eval: %w", arm, sd.seed, err)
	}
	return r, res.LoRA, nil
}

// randomSubset keeps n of the N training pairs uniformly at random (seeded).
func randomSubset(total, n int, seed uint64) []int {
	rng := rand.New(rand.NewPCG(seed, 0x726e64)) // "rnd"
	idx := rng.Perm(total)[:n]
	slices.Sort(idx)
	return idx
}

func logf(w io.Writer, format string, a ...any) {
	if w != nil {
		fmt.Fprintf(w, format, a...)
	}
}
