package train

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/congrad-beam/congrad/gpu/dpo"
)

// Dataset is a set of pairs tokenised for one engine (gpu/dpo's sequence
// format), with reference log-probabilities from the base model.
type Dataset struct {
	Pairs    []Pair
	enc      []dpo.Encoded
	RefW     []float64 // log π_ref(chosen|prompt)
	RefL     []float64 // log π_ref(rejected|prompt)
	Rejected []RejectedPair
	padT     int // padded length that fits every pair
}

// RejectedPair is a pair that could not be used, with the reason.
type RejectedPair struct {
	ID     string
	Reason string
}

// refChunk is the number of pairs per reference/log-prob graph call.
const refChunk = 128

// NewDataset tokenises pairs and computes the reference log-probs. Pairs that
// are too long, have an empty response or a token outside the vocabulary are
// listed in Rejected, not dropped silently.
func (e *Engine) NewDataset(pairs []Pair) (*Dataset, error) {
	ds := &Dataset{}
	for _, p := range pairs {
		enc, err := dpo.Encode(e.M, dpo.Input{PairID: p.ID, Prompt: p.Prompt, Chosen: p.Chosen, Rejected: p.Rejected}, e.Opts.MaxLen, dpo.TruncateReject)
		if err != nil {
			ds.Rejected = append(ds.Rejected, RejectedPair{p.ID, err.Error()})
			continue
		}
		ds.Pairs = append(ds.Pairs, p)
		ds.enc = append(ds.enc, enc)
	}
	ds.setPad(e.Opts.MaxLen)
	var err error
	if ds.RefW, ds.RefL, err = e.seqLogProbs(ds, nil); err != nil {
		return nil, fmt.Errorf("train: reference log-probs: %w", err)
	}
	return ds, nil
}

func (ds *Dataset) setPad(maxLen int) {
	longest := 1
	for _, x := range ds.enc {
		longest = max(longest, x.Len())
	}
	ds.padT = dpo.PadLen(longest, maxLen)
}

// Len is the number of usable pairs.
func (ds *Dataset) Len() int { return len(ds.Pairs) }

// Subset returns the dataset restricted to the given indices.
func (ds *Dataset) Subset(idx []int) *Dataset {
	out := &Dataset{padT: ds.padT}
	for _, i := range idx {
		out.Pairs = append(out.Pairs, ds.Pairs[i])
		out.enc = append(out.enc, ds.enc[i])
		out.RefW = append(out.RefW, ds.RefW[i])
		out.RefL = append(out.RefL, ds.RefL[i])
	}
	return out
}

// seqLogProbs returns log π(chosen|prompt) and log π(rejected|prompt) of
// every pair under the base model (lo nil) or base+lo.
func (e *Engine) seqLogProbs(ds *Dataset, lo *LoRA) (chosen, rejected []float64, err error) {
	ws, err := e.weights()
	if err != nil {
		return nil, nil, err
	}
	pad := e.M.Tok.PAD()
	for s := 0; s < ds.Len(); s += refChunk {
		part := ds.enc[s:min(s+refChunk, ds.Len())]
		bt := dpo.Pack(pad, part, refChunk, ds.padT, dtypes.Float32)
		args := []any{bt.Tokens, bt.Gidx, bt.Mask}
		x := e.ref
		if lo != nil {
			x = e.logp
			args = append(args, loraTensors(lo)...)
		}
		outs, err := exec(x, append(args, ws...))
		if err != nil {
			return nil, nil, fmt.Errorf("log-probs of pairs %d..%d: %w", s, s+len(part)-1, err)
		}
		lp := f32s(outs[0])
		for k := range part {
			chosen = append(chosen, float64(lp[k]))
			rejected = append(rejected, float64(lp[refChunk+k]))
		}
	}
	return chosen, rejected, nil
}

func loraTensors(lo *LoRA) []any {
	out := make([]any, len(lo.Params))
	for i, p := range lo.Params {
		out[i] = tensors.FromFlatDataAndDimensions(p.Value, p.Dims...)
	}
	return out
}

// lossGrad is the mean LP-DPO loss of pairs idx at adapters lo and its
// gradient (parameter order, flattened row-major).
func (e *Engine) lossGrad(ds *Dataset, idx []int, lo *LoRA) (float64, [][]float32, error) {
	part := make([]dpo.Encoded, len(idx))
	refW := make([]float32, len(idx))
	refL := make([]float32, len(idx))
	for k, i := range idx {
		part[k], refW[k], refL[k] = ds.enc[i], float32(ds.RefW[i]), float32(ds.RefL[i])
	}
	bt := dpo.Pack(e.M.Tok.PAD(), part, len(idx), ds.padT, dtypes.Float32)
	ws, err := e.weights()
	if err != nil {
		return 0, nil, err
	}
	args := []any{bt.Tokens, bt.Gidx, bt.Mask, bt.LenDiff,
		tensors.FromFlatDataAndDimensions(refW, len(idx)), tensors.FromFlatDataAndDimensions(refL, len(idx))}
	args = append(append(args, loraTensors(lo)...), ws...)
	outs, err := exec(e.step, args)
	if err != nil {
		return 0, nil, err
	}
	loss := float64(f32s(outs[0])[0])
	grads := make([][]float32, len(lo.Params))
	for i := range grads {
		grads[i] = f32s(outs[1+i])
	}
	return loss, grads, nil
}

// Options configure a training run. Zero values are replaced by defaults in Train.
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
	if o.LR < 0 || math.IsNaN(o.LR) || math.IsInf(o.LR, 0) || o.BatchSize < 0 || o.Steps < 0 || o.Epochs < 0 {
		return o, fmt.Errorf("%w: LR, BatchSize, Steps, Epochs must be >= 0 and finite: %+v", ErrConfig, o)
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
	lo, err := e.NewLoRA(opts.Seed)
	if err != nil {
		return nil, err
	}
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
		loss, grads, err := e.lossGrad(ds, idx, lo)
		if err != nil {
			return nil, fmt.Errorf("train step %d: %w", step, err)
		}
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return nil, fmt.Errorf("train step %d: non-finite loss %v", step, loss)
		}
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
		a.m = append(a.m, make([]float32, len(p.Value)))
		a.v = append(a.v, make([]float32, len(p.Value)))
	}
	return a
}

func (a *adam) update(lo *LoRA, grads [][]float32) {
	a.t++
	c1 := 1 - math.Pow(a.b1, float64(a.t))
	c2 := 1 - math.Pow(a.b2, float64(a.t))
	for i, p := range lo.Params {
		m, v, g := a.m[i], a.v[i], grads[i]
		for j := range p.Value {
			gj := float64(g[j])
			m[j] = float32(a.b1*float64(m[j]) + (1-a.b1)*gj)
			v[j] = float32(a.b2*float64(v[j]) + (1-a.b2)*gj*gj)
			p.Value[j] -= float32(a.lr * (float64(m[j]) / c1) / (math.Sqrt(float64(v[j])/c2) + a.eps))
		}
	}
}

// Rewards returns the implicit rewards β(log πθ − log π_ref) of the chosen and
// rejected response of every pair of ds under adapters lo.
func (e *Engine) Rewards(ds *Dataset, lo *LoRA) (chosen, rejected []float64, err error) {
	lw, ll, err := e.seqLogProbs(ds, lo)
	if err != nil {
		return nil, nil, fmt.Errorf("train: rewards: %w", err)
	}
	for i := range lw {
		chosen = append(chosen, e.Opts.Beta*(lw[i]-ds.RefW[i]))
		rejected = append(rejected, e.Opts.Beta*(ll[i]-ds.RefL[i]))
	}
	return chosen, rejected, nil
}

// PairGradients are exact per-pair LP-DPO gradients w.r.t. the LoRA
// parameters, flattened in Names order (Sizes gives each tensor's length).
type PairGradients struct {
	Names []string
	Sizes []int
	Grads [][]float32 // [pair][param]
}

// PerPairGradients computes exact per-pair gradients at adapters lo (nil:
// fresh adapters with seed 0) with gpu/dpo's extractor, the code the pipeline
// filters with: one backward pass per chunk of pairs.
func (e *Engine) PerPairGradients(ctx context.Context, ds *Dataset, lo *LoRA, chunk int) (*PairGradients, error) {
	var err error
	if lo == nil {
		if lo, err = e.NewLoRA(0); err != nil {
			return nil, err
		}
	}
	if chunk <= 0 {
		chunk = 64
	}
	x, err := dpo.NewExtractor(e.M, dpo.Options{Beta: e.Opts.Beta, Alpha: e.Opts.Alpha, LoRA: e.Opts.LoRA,
		MaxLen: e.Opts.MaxLen, Batch: chunk, Truncate: dpo.TruncateReject, Adapters: lo.Values()})
	if err != nil {
		return nil, fmt.Errorf("train: per-pair gradients: %w", err)
	}
	pg := &PairGradients{Names: lo.Names()}
	for _, p := range lo.Params {
		pg.Sizes = append(pg.Sizes, len(p.Value))
	}
	in := make([]dpo.Input, ds.Len())
	for i, p := range ds.Pairs {
		in[i] = dpo.Input{PairID: p.ID, Prompt: p.Prompt, Chosen: p.Chosen, Rejected: p.Rejected}
	}
	// Several device batches per call, with a cancellation check in between.
	for s := 0; s < len(in); s += 4 * chunk {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		g, _, err := x.ExactGradients(in[s:min(s+4*chunk, len(in))])
		if err != nil {
			return nil, fmt.Errorf("train: per-pair gradients at pair %d: %w", s, err)
		}
		pg.Grads = append(pg.Grads, g...)
	}
	return pg, nil
}
