package dpo

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/gpu/model"
)

// Extractor computes per-pair LP-DPO gradients and their device sketches for
// one model and one set of options. It is safe for concurrent use; each
// distinct (batch, padded length) shape is compiled once.
type Extractor struct {
	m       *model.Model
	opts    Options
	params  []model.LoRAParam
	d       int
	lora    []*tensors.Tensor // adapter values in opts.DType, x.params order
	sketch  []*tensors.Tensor // device sketch constants, built once per Extractor
	refSame bool

	mu    sync.Mutex
	execs map[graphMode]*Exec

	stats Stats
}

// Stats counts what happened to pairs so far (for pipeline metrics).
type Stats struct {
	Pairs, Truncated, Rejected, NonFinite atomic.Int64
}

// NewExtractor validates options and precomputes the LoRA tensors and the
// device sketch constants (buckets/signs or the Gaussian matrix) on the host.
func NewExtractor(m *model.Model, o Options) (*Extractor, error) {
	if m == nil || m.Config == nil {
		return nil, fmt.Errorf("%w: nil model", ErrOptions)
	}
	if m.Backend == nil {
		b, err := model.DefaultBackend()
		if err != nil {
			return nil, fmt.Errorf("dpo: %w", err)
		}
		m.Backend = b
	}
	o, err := o.withDefaults(m.Config)
	if err != nil {
		return nil, err
	}
	x := &Extractor{m: m, opts: o, execs: map[graphMode]*Exec{}}
	if x.params, err = model.LoRAParams(m.Config, o.LoRA); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOptions, err)
	}
	if o.Adapters != nil {
		if len(o.Adapters) != len(x.params) {
			return nil, fmt.Errorf("%w: %d adapter tensors given, LoRA options imply %d", ErrOptions, len(o.Adapters), len(x.params))
		}
		for i := range x.params {
			if len(o.Adapters[i]) != len(x.params[i].Value) {
				return nil, fmt.Errorf("%w: adapter %s has %d values, want %d", ErrOptions, x.params[i].Name, len(o.Adapters[i]), len(x.params[i].Value))
			}
			x.params[i].Value = append([]float32(nil), o.Adapters[i]...)
		}
	}
	x.d = model.LoRASize(x.params)
	x.refSame = !o.forceRefForward
	for _, p := range x.params {
		x.lora = append(x.lora, floatTensor(o.DType, toF64(p.Value), p.Dims...))
		if !p.IsA {
			for _, v := range p.Value {
				if v != 0 {
					x.refSame = false
				}
			}
		}
	}
	if err := x.buildSketch(); err != nil {
		return nil, err
	}
	return x, nil
}

// ParamNames lists the adapter tensors in gradient order (PEFT names).
func (x *Extractor) ParamNames() []string {
	n := make([]string, len(x.params))
	for i, p := range x.params {
		n[i] = p.Name
	}
	return n
}

// Options returns the resolved options (defaults filled): what the pipeline
// records next to the sketches (sketch spec, β, α, LoRA, max length).
func (x *Extractor) Options() Options { return x.opts }

// Dim is the gradient length d (number of LoRA parameters).
func (x *Extractor) Dim() int { return x.d }

// Stats returns the running counters.
func (x *Extractor) Stats() *Stats { return &x.stats }

// maxGaussianEntries bounds the dense Gaussian matrix kept on the device.
const maxGaussianEntries = 1 << 28

func (x *Extractor) buildSketch() error {
	s := x.opts.Sketch
	switch s.Method {
	case sketch.CountSketch:
		buckets := make([]int32, 0, x.d)
		signs := make([]float64, 0, x.d)
		for _, p := range x.params {
			for j := range p.Value {
				bk, sg := s.Bucket(p.Name, j)
				buckets = append(buckets, int32(bk))
				signs = append(signs, float64(sg))
			}
		}
		x.sketch = []*tensors.Tensor{tensors.FromFlatDataAndDimensions(buckets, x.d, 1), floatTensor(x.opts.DType, signs, x.d)}
	case sketch.Gaussian:
		if int64(x.d)*int64(s.K) > maxGaussianEntries {
			return fmt.Errorf("%w: gaussian sketch matrix d=%d x K=%d too large for the device; use countsketch", ErrOptions, x.d, s.K)
		}
		mat := make([]float64, x.d*s.K)
		col := make([]float32, s.K)
		row := 0
		for _, p := range x.params {
			for j := range p.Value {
				s.GaussianColumn(p.Name, j, col)
				for k, v := range col {
					mat[row*s.K+k] = float64(v)
				}
				row++
			}
		}
		x.sketch = []*tensors.Tensor{floatTensor(x.opts.DType, mat, x.d, s.K)}
	default: // Validate already rejected other methods
		return fmt.Errorf("%w: sketch method %q", ErrOptions, s.Method)
	}
	return nil
}

// Extract returns one Output per input, in order. Pairs that cannot be
// processed carry Err; the error return is for failures of the whole call.
func (x *Extractor) Extract(in []Input) ([]Output, error) {
	out := make([]Output, len(in))
	err := x.run(in, graphMode{refForward: !x.refSame}, func(i int, e encoded, r rowResult) {
		o := &out[i]
		o.PairID, o.Truncated = in[i].PairID, e.truncated
		if e.err != "" {
			o.Err = e.err
			return
		}
		o.Sketch = make([]float32, len(r.vec))
		for k, v := range r.vec {
			o.Sketch[k] = float32(v)
		}
		o.Loss, o.Z, o.RefChosenLogp, o.RefRejectedLogp = r.loss, r.z, r.refW, r.refL
		o.ChosenTokens, o.RejectedTokens = e.nChosen, e.nRejected
	})
	return out, err
}

// ExactGradients returns the full per-pair gradients (x.ParamNames() order,
// each tensor flattened row-major) for tests and fidelity experiments. Any
// pair that cannot be processed makes the call fail, naming the pair.
func (x *Extractor) ExactGradients(in []Input) ([][]float32, []string, error) {
	g64, err := x.exactGradients64(in)
	if err != nil {
		return nil, nil, err
	}
	out := make([][]float32, len(g64))
	for i, g := range g64 {
		out[i] = make([]float32, len(g))
		for j, v := range g {
			out[i][j] = float32(v)
		}
	}
	return out, x.ParamNames(), nil
}

func (x *Extractor) exactGradients64(in []Input) ([][]float64, error) {
	out := make([][]float64, len(in))
	var firstErr error
	err := x.run(in, graphMode{exact: true, refForward: !x.refSame}, func(i int, e encoded, r rowResult) {
		if e.err != "" && firstErr == nil {
			firstErr = fmt.Errorf("dpo: pair %q: %s", in[i].PairID, e.err)
		}
		out[i] = r.vec
	})
	if err != nil {
		return nil, err
	}
	return out, firstErr
}

// GradNorms runs the same batched backward pass as Extract but returns
// ||g_i|| instead of sketching (NaN for pairs that fail): Extract's time minus
// GradNorms' time is the cost of the device sketch.
func (x *Extractor) GradNorms(in []Input) ([]float64, error) {
	out := make([]float64, len(in))
	err := x.run(in, graphMode{gradOnly: true, refForward: !x.refSame}, func(i int, e encoded, r rowResult) {
		out[i] = math.NaN()
		if e.err == "" {
			out[i] = r.vec[0]
		}
	})
	return out, err
}

type rowResult struct {
	vec                         []float64
	loss, z, refW, refL, absSum float64
}

// run encodes all pairs, sends the valid ones through the device in batches
// of opts.Batch and calls emit once per input, in input order.
func (x *Extractor) run(in []Input, mode graphMode, emit func(int, encoded, rowResult)) error {
	encs := make([]encoded, len(in))
	var todo []int
	for i, p := range in {
		encs[i] = encode(x.m.Tok, x.m.Config.VocabSize, p, x.opts.MaxLen, x.opts.Truncate)
		x.stats.Pairs.Add(1)
		if encs[i].truncated > 0 {
			x.stats.Truncated.Add(1)
		}
		if encs[i].err != "" {
			x.stats.Rejected.Add(1)
			continue
		}
		todo = append(todo, i)
	}
	results := make([]rowResult, len(in))
	for s := 0; s < len(todo); s += x.opts.Batch {
		idx := todo[s:min(s+x.opts.Batch, len(todo))]
		rows, err := x.runBatch(mode, idx, encs)
		if err != nil {
			return err
		}
		for k, i := range idx {
			r := rows[k]
			if bad := nonFinite(r); bad != "" {
				encs[i].err = bad
				x.stats.NonFinite.Add(1)
				continue
			}
			results[i] = r
		}
	}
	for i := range in {
		emit(i, encs[i], results[i])
	}
	return nil
}

func nonFinite(r rowResult) string {
	names := []string{"loss", "z", "ref chosen logp", "ref rejected logp"}
	for k, v := range []float64{r.loss, r.z, r.refW, r.refL} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Sprintf("non-finite %s (%v)", names[k], v)
		}
	}
	// Σ|g| is finite iff every gradient entry is (overflow aside, also bad).
	if math.IsNaN(r.absSum) || math.IsInf(r.absSum, 0) {
		return "non-finite gradient"
	}
	for _, v := range r.vec {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return "non-finite sketch"
		}
	}
	return ""
}
