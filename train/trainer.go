package train

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/gomlx/gomlx/core/tensors"
)

// Dataset is a set of pairs tokenised for one engine, with reference
// log-probabilities from the base model (LoRA B = 0).
type Dataset struct {
	Pairs    []Pair
	chosen   []encoded
	rejected []encoded
	RefW     []float64 // log π_ref(chosen|prompt)
	RefL     []float64 // log π_ref(rejected|prompt)
	Rejected []RejectedPair
}

// RejectedPair is a pair that could not be used, with the reason.
type RejectedPair struct {
	ID     string
	Reason string
}

// NewDataset tokenises pairs and computes the reference log-probs. Pairs that
// are too long or have an empty response are listed in Rejected, not dropped silently.
func (e *Engine) NewDataset(pairs []Pair) (*Dataset, error) {
	ds := &Dataset{}
	for _, p := range pairs {
		w, err := encode(e.Cfg, p.Prompt, p.Chosen)
		if err != nil {
			ds.Rejected = append(ds.Rejected, RejectedPair{p.ID, "chosen: " + err.Error()})
			continue
		}
		l, err := encode(e.Cfg, p.Prompt, p.Rejected)
		if err != nil {
			ds.Rejected = append(ds.Rejected, RejectedPair{p.ID, "rejected: " + err.Error()})
			continue
		}
		ds.Pairs = append(ds.Pairs, p)
		ds.chosen = append(ds.chosen, w)
		ds.rejected = append(ds.rejected, l)
	}
	ref := NewLoRA(e.Cfg, 0) // B = 0: the adapted model equals the base
	var err error
	if ds.RefW, err = e.seqLogProbs(ref, ds.chosen, 256); err != nil {
		return nil, fmt.Errorf("reference log-probs (chosen): %w", err)
	}
	if ds.RefL, err = e.seqLogProbs(ref, ds.rejected, 256); err != nil {
		return nil, fmt.Errorf("reference log-probs (rejected): %w", err)
	}
	return ds, nil
}

// Len is the number of usable pairs.
func (ds *Dataset) Len() int { return len(ds.Pairs) }

// Subset returns the dataset restricted to the given indices (shares storage).
func (ds *Dataset) Subset(idx []int) *Dataset {
	out := &Dataset{}
	for _, i := range idx {
		out.Pairs = append(out.Pairs, ds.Pairs[i])
		out.chosen = append(out.chosen, ds.chosen[i])
		out.rejected = append(out.rejected, ds.rejected[i])
		out.RefW = append(out.RefW, ds.RefW[i])
		out.RefL = append(out.RefL, ds.RefL[i])
	}
	return out
}

// pairInputs builds the DPO graph inputs for the pairs idx.
func (e *Engine) pairInputs(ds *Dataset, idx []int) []any {
	seqs := make([]encoded, 0, 2*len(idx))
	refW := make([]float32, len(idx))
	refL := make([]float32, len(idx))
	lenDiff := make([]float32, len(idx))
	for _, i := range idx {
		seqs = append(seqs, ds.chosen[i])
	}
	for j, i := range idx {
		seqs = append(seqs, ds.rejected[i])
		refW[j], refL[j] = float32(ds.RefW[i]), float32(ds.RefL[i])
		lenDiff[j] = float32(ds.chosen[i].respN - ds.rejected[i].respN)
	}
	bt := makeBatch(seqs, e.Cfg.MaxLen)
	return []any{bt.tokens, bt.mask, tensors.FromFlatDataAndDimensions(refW, len(idx)),
		tensors.FromFlatDataAndDimensions(refL, len(idx)), tensors.FromFlatDataAndDimensions(lenDiff, len(idx))}
}

// Options configure a training run. Zero values are replaced by defaults in Run.
type Options struct {
	LR        float64 // Adam learning rate (default 1e-3)
	BatchSize int     // pairs per step (default 32; capped at the dataset size)
	Steps     int     // optimiser steps; if 0, Epochs·ceil(N/BatchSize)
	Epochs    int     // default 1, used only when Steps == 0
	Seed      uint64  // batch order and LoRA init
	Progress  func(step int, loss float64)
}

func (o Options) withDefaults(n int) (Options, error) {
	if o.LR == 0 {
		o.LR = 1e-3
	}
	if o.BatchSize == 0 {
		o.BatchSize = 32
	}
	if o.Epochs == 0 {
		o.Epochs = 1
	}
	if o.LR < 0 || math.IsNaN(o.LR) || o.BatchSize < 0 || o.Steps < 0 || o.Epochs < 0 {
		return o, fmt.Errorf("%w: LR, BatchSize, Steps, Epochs must be >= 0: %+v", ErrConfig, o)
	}
	if n == 0 {
		return o, fmt.Errorf("%w: no pairs to train on", ErrConfig)
	}
	o.BatchSize = min(o.BatchSize, n)
	if o.Steps == 0 {
		o.Steps = o.Epochs * ((n + o.BatchSize - 1) / o.BatchSize)
	}
	return o, nil
}

// Result is a trained adapter and its loss curve.
type Result struct {
	LoRA   *LoRA
	Losses []float64 // mean batch loss per step
}

// Train runs LP-DPO with Adam on ds from fresh adapters seeded by opts.Seed.
// The batch order is a seeded reshuffle per pass; every batch has exactly
// BatchSize pairs (the permutation wraps), so one graph shape serves the run.
func (e *Engine) Train(ctx context.Context, ds *Dataset, opts Options) (*Result, error) {
	opts, err := opts.withDefaults(ds.Len())
	if err != nil {
		return nil, err
	}
	lo := NewLoRA(e.Cfg, opts.Seed)
	adam := newAdam(lo, opts.LR)
	rng := rand.New(rand.NewPCG(opts.Seed, 0x62617463)) // "batc"
	perm := rng.Perm(ds.Len())
	cursor := 0
	res := &Result{LoRA: lo}
	idx := make([]int, opts.BatchSize)
	for step := 0; step < opts.Steps; step++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for j := range idx {
			if cursor == len(perm) {
				perm, cursor = rng.Perm(ds.Len()), 0
			}
			idx[j] = perm[cursor]
			cursor++
		}
		out, err := e.step.Exec(args(e.base, loraTensors(lo), e.pairInputs(ds, idx))...)
		if err != nil {
			return nil, fmt.Errorf("train step %d: %w", step, err)
		}
		loss := float64(tensors.MustCopyFlatData[float32](out[0])[0])
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			finalize(out)
			return nil, fmt.Errorf("train step %d: non-finite loss %v", step, loss)
		}
		grads := make([][]float32, len(lo.Params))
		for i := range lo.Params {
			grads[i] = tensors.MustCopyFlatData[float32](out[1+i])
		}
		finalize(out)
		adam.update(lo, grads)
		res.Losses = append(res.Losses, loss)
		if opts.Progress != nil {
			opts.Progress(step, loss)
		}
	}
	return res, nil
}

// adam is the host-side optimiser state.
type adam struct {
	lr, b1, b2, eps float64
	t               int
	m, v            [][]float32
}

func newAdam(lo *LoRA, lr float64) *adam {
	a := &adam{lr: lr, b1: 0.9, b2: 0.999, eps: 1e-8}
	for _, p := range lo.Params {
		a.m = append(a.m, make([]float32, len(p.Data)))
		a.v = append(a.v, make([]float32, len(p.Data)))
	}
	return a
}

func (a *adam) update(lo *LoRA, grads [][]float32) {
	a.t++
	c1 := 1 - math.Pow(a.b1, float64(a.t))
	c2 := 1 - math.Pow(a.b2, float64(a.t))
	for i, p := range lo.Params {
		m, v, g := a.m[i], a.v[i], grads[i]
		for j := range p.Data {
			gj := float64(g[j])
			m[j] = float32(a.b1*float64(m[j]) + (1-a.b1)*gj)
			v[j] = float32(a.b2*float64(v[j]) + (1-a.b2)*gj*gj)
			p.Data[j] -= float32(a.lr * (float64(m[j]) / c1) / (math.Sqrt(float64(v[j])/c2) + a.eps))
		}
	}
}

// Rewards returns the implicit rewards β(log πθ − log π_ref) of the chosen and
// rejected response of every pair of ds under adapters lo.
func (e *Engine) Rewards(ds *Dataset, lo *LoRA) (chosen, rejected []float64, err error) {
	lw, err := e.seqLogProbs(lo, ds.chosen, 256)
	if err != nil {
		return nil, nil, err
	}
	ll, err := e.seqLogProbs(lo, ds.rejected, 256)
	if err != nil {
		return nil, nil, err
	}
	for i := range lw {
		chosen = append(chosen, e.beta*(lw[i]-ds.RefW[i]))
		rejected = append(rejected, e.beta*(ll[i]-ds.RefL[i]))
	}
	return chosen, rejected, nil
}

// PairGradients are exact per-pair LP-DPO gradients w.r.t. the LoRA
// parameters, flattened in Names order (Sizes gives each tensor's length).
type PairGradients struct {
	Names []string
	Sizes []int
	Grads [][]float32 // [pair][param]
	Loss  []float64
	Z     []float64
}

// PerPairGradients computes exact per-pair gradients at adapters lo (nil:
// fresh adapters with seed 0) in one backward pass per chunk of pairs: the
// adapters carry a leading pair axis, so each pair differentiates its own copy.
func (e *Engine) PerPairGradients(ctx context.Context, ds *Dataset, lo *LoRA, chunk int) (*PairGradients, error) {
	if lo == nil {
		lo = NewLoRA(e.Cfg, 0)
	}
	if chunk <= 0 {
		chunk = 64
	}
	pg := &PairGradients{Names: lo.Names}
	for _, p := range lo.Params {
		pg.Sizes = append(pg.Sizes, len(p.Data))
	}
	total := lo.NumParams()
	for start := 0; start < ds.Len(); start += chunk {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		idx := make([]int, 0, chunk)
		for i := start; i < min(start+chunk, ds.Len()); i++ {
			idx = append(idx, i)
		}
		n := len(idx)
		rep := make([]*tensors.Tensor, len(lo.Params))
		for i, p := range lo.Params {
			data := make([]float32, 0, n*len(p.Data))
			for range n {
				data = append(data, p.Data...)
			}
			rep[i] = tensors.FromFlatDataAndDimensions(data, append([]int{n}, p.Dims...)...)
		}
		out, err := e.perPair.Exec(args(e.base, rep, e.pairInputs(ds, idx))...)
		if err != nil {
			return nil, fmt.Errorf("per-pair gradients at pair %d: %w", start, err)
		}
		loss := tensors.MustCopyFlatData[float32](out[0])
		z := tensors.MustCopyFlatData[float32](out[1])
		flat := make([][]float32, len(lo.Params))
		for i := range lo.Params {
			flat[i] = tensors.MustCopyFlatData[float32](out[2+i])
		}
		finalize(out)
		for j := range n {
			g := make([]float32, 0, total)
			for i, sz := range pg.Sizes {
				g = append(g, flat[i][j*sz:(j+1)*sz]...)
			}
			pg.Grads = append(pg.Grads, g)
			pg.Loss = append(pg.Loss, float64(loss[j]))
			pg.Z = append(pg.Z, float64(z[j]))
		}
	}
	return pg, nil
}
