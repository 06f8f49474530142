package train

import (
	"errors"
	"fmt"
	"math"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/gobackend"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
)

// Pair is one preference pair as the trainer sees it.
type Pair struct {
	ID       string
	Lang     string
	Prompt   string
	Chosen   string
	Rejected string
}

// ErrTooLong is wrapped when a pair does not fit the model's MaxLen. Such a
// pair is rejected (never silently truncated): the caller counts it.
var ErrTooLong = errors.New("sequence longer than MaxLen")

// ErrEmpty is wrapped when a response is empty.
var ErrEmpty = errors.New("empty response")

// encoded is one tokenised sequence: BOS prompt SEP response, and the mask of
// positions whose next token is a response token.
type encoded struct {
	tokens []int32
	mask   []float32
	respN  int
}

func encode(cfg Config, prompt, resp string) (encoded, error) {
	if len(resp) == 0 {
		return encoded{}, ErrEmpty
	}
	n := 2 + len(prompt) + len(resp)
	if n > cfg.MaxLen {
		return encoded{}, fmt.Errorf("%w: %d tokens > %d", ErrTooLong, n, cfg.MaxLen)
	}
	e := encoded{tokens: make([]int32, 0, n), respN: len(resp)}
	e.tokens = append(e.tokens, BOS)
	for _, c := range []byte(prompt) {
		e.tokens = append(e.tokens, int32(c))
	}
	e.tokens = append(e.tokens, SEP)
	start := len(e.tokens) - 1 // position whose next token is the first response token
	for _, c := range []byte(resp) {
		e.tokens = append(e.tokens, int32(c))
	}
	e.mask = make([]float32, n)
	for i := start; i < n-1; i++ {
		e.mask[i] = 1
	}
	return e, nil
}

// BackendConfig is the GoMLX pure-Go backend configuration. Sequential op
// execution is pinned: with the default parallel scheduler, parallel matmul
// workers deadlocked on a 2-core machine (observed with compute v0.1.2).
var BackendConfig = "ops_sequential"

// Engine holds the compiled graphs for one base model on one backend.
type Engine struct {
	Cfg     Config
	backend compute.Backend
	base    []*tensors.Tensor
	logp    *Exec // base, lora, tokens, mask -> [N] sequence log-probs
	step    *Exec // base, lora, tokens, mask, refW, refL, lenDiff -> mean loss, grads..., z
	perPair *Exec // same with per-pair lora -> per-pair loss, z, per-pair grads...
	beta    float64
	alpha   float64
}

// NewEngine compiles nothing yet (graphs compile on first use per shape). It
// uses the pure-Go GoMLX backend; beta and alpha are the LP-DPO constants.
func NewEngine(base *Base, beta, alpha float64) (*Engine, error) {
	if err := base.Cfg.Validate(); err != nil {
		return nil, err
	}
	if beta <= 0 || math.IsNaN(beta) || math.IsInf(beta, 0) || math.IsNaN(alpha) || math.IsInf(alpha, 0) {
		return nil, fmt.Errorf("%w: beta must be finite and > 0 (got %v), alpha finite (got %v)", ErrConfig, beta, alpha)
	}
	be, err := gobackend.New(BackendConfig)
	if err != nil {
		return nil, fmt.Errorf("go backend: %w", err)
	}
	e := &Engine{Cfg: base.Cfg, backend: be, beta: beta, alpha: alpha}
	for _, t := range base.tensors() {
		e.base = append(e.base, tensors.FromFlatDataAndDimensions(t.Data, t.Dims...))
	}
	cfg := base.Cfg
	nb, nl := numBaseInputs(cfg), numLoRAInputs(cfg)
	if e.logp, err = NewExec(be, func(in []*Node) []*Node {
		b, rest := unpackBase(cfg, in)
		return []*Node{seqLogProb(cfg, b, rest[:nl], false, rest[nl], rest[nl+1])}
	}); err != nil {
		return nil, fmt.Errorf("logp graph: %w", err)
	}
	dpo := func(in []*Node, perExample bool) []*Node {
		b, rest := unpackBase(cfg, in[:nb])
		_ = rest
		lora := in[nb : nb+nl]
		tokens, mask, refW, refL, lenDiff := in[nb+nl], in[nb+nl+1], in[nb+nl+2], in[nb+nl+3], in[nb+nl+4]
		used := lora
		if perExample { // one adapter copy per pair, shared by its chosen and rejected rows
			used = make([]*Node, nl)
			for i, p := range lora {
				used[i] = Concatenate([]*Node{p, p}, 0)
			}
		}
		loss, z := dpoLoss(seqLogProb(cfg, b, used, perExample, tokens, mask), refW, refL, lenDiff, e.beta, e.alpha)
		if perExample {
			grads := Gradient(ReduceAllSum(loss), lora...)
			return append([]*Node{loss, z}, grads...)
		}
		mean := ReduceAllMean(loss)
		grads := Gradient(mean, lora...)
		return append(append([]*Node{mean}, grads...), z)
	}
	if e.step, err = NewExec(be, func(in []*Node) []*Node { return dpo(in, false) }); err != nil {
		return nil, fmt.Errorf("dpo step graph: %w", err)
	}
	if e.perPair, err = NewExec(be, func(in []*Node) []*Node { return dpo(in, true) }); err != nil {
		return nil, fmt.Errorf("per-pair graph: %w", err)
	}
	return e, nil
}

// batch is a padded block of encoded sequences.
type batch struct {
	tokens *tensors.Tensor
	mask   *tensors.Tensor
}

func padLen(seqs []encoded) int {
	t := 0
	for _, s := range seqs {
		t = max(t, len(s.tokens))
	}
	return (t + 7) / 8 * 8 // few distinct shapes, so few compilations
}

func makeBatch(seqs []encoded, maxLen int) batch {
	t := min(padLen(seqs), maxLen)
	tok := make([]int32, len(seqs)*t)
	msk := make([]float32, len(seqs)*t)
	for i, s := range seqs {
		copy(tok[i*t:], s.tokens)
		copy(msk[i*t:], s.mask)
	}
	return batch{tensors.FromFlatDataAndDimensions(tok, len(seqs), t), tensors.FromFlatDataAndDimensions(msk, len(seqs), t)}
}

func loraTensors(lo *LoRA) []*tensors.Tensor {
	out := make([]*tensors.Tensor, len(lo.Params))
	for i, p := range lo.Params {
		out[i] = tensors.FromFlatDataAndDimensions(p.Data, p.Dims...)
	}
	return out
}

func args(parts ...any) []any {
	var out []any
	for _, p := range parts {
		switch v := p.(type) {
		case []*tensors.Tensor:
			for _, t := range v {
				out = append(out, t)
			}
		case []any:
			out = append(out, v...)
		default:
			out = append(out, v)
		}
	}
	return out
}

func finalize(ts []*tensors.Tensor) {
	for _, t := range ts {
		_ = t.FinalizeAll()
	}
}

// SeqLogProbs returns log π(response|prompt) for each (prompt, response)
// under base+lora, computed in chunks of chunk sequences.
func (e *Engine) seqLogProbs(lo *LoRA, seqs []encoded, chunk int) ([]float64, error) {
	out := make([]float64, 0, len(seqs))
	lt := loraTensors(lo)
	for i := 0; i < len(seqs); i += chunk {
		bt := makeBatch(seqs[i:min(i+chunk, len(seqs))], e.Cfg.MaxLen)
		res, err := e.logp.Exec(args(e.base, lt, bt.tokens, bt.mask)...)
		if err != nil {
			return nil, fmt.Errorf("logp batch at %d: %w", i, err)
		}
		for _, v := range tensors.MustCopyFlatData[float32](res[0]) {
			out = append(out, float64(v))
		}
		finalize(res)
	}
	return out, nil
}
