// Package train is a small LP-DPO LoRA trainer for the models of gpu/model:
// the embedded tiny model and HF Llama/Gemma checkpoints alike. The forward
// pass, the sequence format, the log-probabilities and the loss are those of
// gpu/model and gpu/dpo, so a model trained here is the model whose per-pair
// gradients the pipeline filtered with. Adam runs on the host.
//
// It is meant for tests, small models and controlled experiments (see
// experiment/); large models are trained with TRL on the kept-pairs Parquet
// the pipeline writes.
package train

import (
	"errors"
	"fmt"
	"math"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads like maths
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/congrad-beam/congrad/gpu/dpo"
	"github.com/congrad-beam/congrad/gpu/model"
)

// ErrConfig is wrapped by every configuration validation error.
var ErrConfig = errors.New("invalid config")

// Pair is one preference pair as the trainer sees it.
type Pair struct {
	ID       string
	Lang     string
	Prompt   string
	Chosen   string
	Rejected string
}

// EngineOptions are the LP-DPO constants and the adapters. Zero values take
// the defaults of gpu/dpo: β 0.1, α 0, LoRA rank 8 / alpha 16 on q and v,
// MaxLen min(512, max_position_embeddings).
type EngineOptions struct {
	Beta, Alpha float64
	LoRA        model.LoRAOptions
	MaxLen      int // tokens per sequence; longer pairs are rejected, never truncated
}

// Engine holds the compiled graphs for one model. Graphs compile on first
// use per shape. It computes in float32.
type Engine struct {
	M    *model.Model
	Opts EngineOptions // resolved
	tmpl []model.LoRAParam
	ref  *Exec // tokens, gidx, mask, weights -> [2B] base-model sequence log-probs
	logp *Exec // tokens, gidx, mask, lora..., weights -> [2B] adapted log-probs
	step *Exec // tokens, gidx, mask, lenDiff, refW, refL, lora..., weights -> mean loss, grads...
}

// NewEngine validates the options against m's config and prepares the graphs.
// m.Backend nil means model.DefaultBackend() ($GOMLX_BACKEND, default go:ops_sequential).
func NewEngine(m *model.Model, o EngineOptions) (*Engine, error) {
	if m == nil || m.Config == nil || m.Tok == nil {
		return nil, fmt.Errorf("%w: nil model, config or tokenizer", ErrConfig)
	}
	if err := model.CheckWeights(m.Config, m.Weights); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	if o.Beta == 0 {
		o.Beta = 0.1
	}
	if o.MaxLen == 0 {
		o.MaxLen = min(512, m.Config.MaxPositionEmbeddings)
	}
	o.LoRA = o.LoRA.WithDefaults()
	if o.Beta < 0 || math.IsNaN(o.Beta) || math.IsInf(o.Beta, 0) || math.IsNaN(o.Alpha) || math.IsInf(o.Alpha, 0) {
		return nil, fmt.Errorf("%w: beta must be finite and > 0 (got %v), alpha finite (got %v)", ErrConfig, o.Beta, o.Alpha)
	}
	if o.MaxLen < 4 || o.MaxLen > m.Config.MaxPositionEmbeddings {
		return nil, fmt.Errorf("%w: max_len %d outside [4, %d]", ErrConfig, o.MaxLen, m.Config.MaxPositionEmbeddings)
	}
	if o.LoRA.Rank < 1 || o.LoRA.Alpha <= 0 || math.IsNaN(o.LoRA.Alpha) {
		return nil, fmt.Errorf("%w: LoRA rank %d and alpha %v must be positive", ErrConfig, o.LoRA.Rank, o.LoRA.Alpha)
	}
	tmpl, err := model.LoRAParams(m.Config, o.LoRA)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if m.Backend == nil {
		if m.Backend, err = model.DefaultBackend(); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
	}
	e := &Engine{M: m, Opts: o, tmpl: tmpl}
	cfg, np := m.Config, len(tmpl)
	if e.ref, err = NewExec(m.Backend, func(in []*Node) []*Node {
		return []*Node{dpo.SeqLogProbs(cfg, model.BindWeights(cfg, in[3:]), nil, in[0], in[1], in[2])}
	}); err != nil {
		return nil, fmt.Errorf("train: reference graph: %w", err)
	}
	if e.logp, err = NewExec(m.Backend, func(in []*Node) []*Node {
		return []*Node{dpo.SeqLogProbs(cfg, model.BindWeights(cfg, in[3+np:]), e.loraNodes(in[3:3+np]), in[0], in[1], in[2])}
	}); err != nil {
		return nil, fmt.Errorf("train: log-prob graph: %w", err)
	}
	if e.step, err = NewExec(m.Backend, e.stepGraph); err != nil {
		return nil, fmt.Errorf("train: step graph: %w", err)
	}
	return e, nil
}

// loraNodes binds unbatched adapter inputs (LoRAParams order) as one group
// shared by every sequence of the batch.
func (e *Engine) loraNodes(params []*Node) *model.LoRANodes {
	l := &model.LoRANodes{Scale: e.Opts.LoRA.Scale(), A: map[string]*Node{}, B: map[string]*Node{}}
	for i, p := range e.tmpl {
		n := InsertAxes(params[i], 0) // [1, ...]: group axis of size 1
		if p.IsA {
			l.A[p.Base] = n
		} else {
			l.B[p.Base] = n
		}
	}
	return l
}

// stepGraph is the mean LP-DPO loss of a batch and its gradient with respect
// to the adapters, with the reference log-probs given as inputs (computed once
// per dataset): one policy forward and one backward per step.
func (e *Engine) stepGraph(in []*Node) []*Node {
	cfg, np := e.M.Config, len(e.tmpl)
	tokens, gidx, mask, lenDiff, refW, refL := in[0], in[1], in[2], in[3], in[4], in[5]
	params := in[6 : 6+np]
	b := lenDiff.Shape().Dimensions[0]
	pol := dpo.SeqLogProbs(cfg, model.BindWeights(cfg, in[6+np:]), e.loraNodes(params), tokens, gidx, mask)
	polW, polL := SliceAxis(pol, 0, AxisRange(0, b)), SliceAxis(pol, 0, AxisRange(b, 2*b))
	loss, _ := dpo.Objective(polW, polL, refW, refL, lenDiff, e.Opts.Beta, e.Opts.Alpha)
	// Padding pairs (zero mask) have z = 0 and a constant loss log 2 with no
	// gradient; the batch always holds real pairs only (see Train), so the
	// mean is over real pairs.
	mean := ReduceAllMean(loss)
	return append([]*Node{mean}, Gradient(mean, params...)...)
}

// exec runs a compiled graph, turning a GoMLX panic (bad shapes, backend
// failure) into an error so bad input never crashes a caller.
func exec(x *Exec, args []any) (outs []*tensors.Tensor, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("graph execution panicked: %v", r)
		}
	}()
	return x.Exec(args...)
}

func (e *Engine) weights() ([]any, error) {
	ws, err := e.M.DeviceWeights(dtypes.Float32)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	out := make([]any, len(ws))
	for i, w := range ws {
		out[i] = w
	}
	return out, nil
}

func f32s(t *tensors.Tensor) []float32 {
	defer t.FinalizeAll()
	return tensors.MustCopyFlatData[float32](t)
}
