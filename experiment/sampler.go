package experiment

import (
	"fmt"
	"math"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads like maths
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/congrad-beam/congrad/gpu/model"
)

// sampler draws responses from a policy restricted to one language's
// alphabet (ancestral sampling, temperature 1, with a KV cache): at each of
// the RespLen positions the next symbol is drawn from the model's
// next-token distribution renormalised over the language's characters. It
// also returns log π(y|x) of every sample under the full vocabulary with
// EOS scored, the sequence log-probability gpu/dpo and train use, so the
// policy can judge its own samples.
//
// The graphs take the weights as inputs, so one sampler serves every model
// of one config (the base model and each round's merged model).
type sampler struct {
	cfg           *model.Config
	rows, t       int
	prefill, step *Exec
}

// DefaultSamplerRows is the number of sequences per sampler graph call.
const DefaultSamplerRows = 1024

func newSampler(backend compute.Backend, cfg *model.Config, t, rows int) (*sampler, error) {
	if rows <= 0 {
		rows = DefaultSamplerRows
	}
	s := &sampler{cfg: cfg, rows: rows, t: t}
	nl := cfg.NumHiddenLayers
	var err error
	if s.prefill, err = NewExec(backend, func(in []*Node) []*Node {
		w := model.BindWeights(cfg, in[2:])
		h, ks, vs := model.HiddenKV(cfg, w, nil, in[0])
		out := []*Node{model.Logits(cfg, w, Gather(h, in[1]))}
		return append(append(out, ks...), vs...)
	}); err != nil {
		return nil, fmt.Errorf("sampler: prefill graph: %w", err)
	}
	if s.step, err = NewExec(backend, func(in []*Node) []*Node {
		ks, vs := in[2:2+nl], in[2+nl:2+2*nl]
		w := model.BindWeights(cfg, in[2+2*nl:])
		h, nk, nv := model.DecodeStep(cfg, w, in[0], in[1], ks, vs)
		out := []*Node{model.Logits(cfg, w, h)}
		return append(append(out, nk...), nv...)
	}); err != nil {
		return nil, fmt.Errorf("sampler: step graph: %w", err)
	}
	return s, nil
}

// sampleJob is one row: a prompt (token ids after BOS), the allowed token
// ids of the response, and one uniform number per response position.
type sampleJob struct {
	prompt  []int
	allowed []int
	u       []float64
}

// sample runs every job and returns the sampled response token ids and
// log π(y|x) (response tokens and EOS). Rows are processed in chunks of
// s.rows; every job must have the same prompt length and len(u).
func (s *sampler) sample(m *model.Model, jobs []sampleJob) ([][]int, []float64, error) {
	if len(jobs) == 0 {
		return nil, nil, nil
	}
	ws, err := m.DeviceWeights(dtypes.Float32)
	if err != nil {
		return nil, nil, fmt.Errorf("sampler: %w", err)
	}
	wargs := make([]any, len(ws))
	for i, w := range ws {
		wargs[i] = w
	}
	out := make([][]int, len(jobs))
	lps := make([]float64, len(jobs))
	for c := 0; c < len(jobs); c += s.rows {
		part := jobs[c:min(c+s.rows, len(jobs))]
		toks, lp, err := s.chunk(m, wargs, part)
		if err != nil {
			return nil, nil, fmt.Errorf("sampler: rows %d..%d: %w", c, c+len(part)-1, err)
		}
		copy(out[c:], toks)
		copy(lps[c:], lp)
	}
	return out, lps, nil
}

func (s *sampler) chunk(m *model.Model, wargs []any, jobs []sampleJob) ([][]int, []float64, error) {
	r, t := s.rows, s.t
	pl, rl := len(jobs[0].prompt)+1, len(jobs[0].u) // BOS + prompt; response length
	if pl+rl > t {
		return nil, nil, fmt.Errorf("%d prompt and %d response tokens exceed %d positions", pl, rl, t)
	}
	pad, bos, eos := int32(m.Tok.PAD()), int32(m.Tok.BOS()), m.Tok.EOS()
	toks := make([]int32, r*t)
	last := make([]int32, 2*r)
	for i := 0; i < r; i++ {
		for p := 0; p < t; p++ {
			toks[i*t+p] = pad
		}
		last[2*i], last[2*i+1] = int32(i), int32(pl-1)
		if i < len(jobs) {
			toks[i*t] = bos
			for p, id := range jobs[i].prompt {
				toks[i*t+1+p] = int32(id)
			}
		}
	}
	logits, caches, err := s.run(s.prefill, []any{tensors.FromFlatDataAndDimensions(toks, r, t), tensors.FromFlatDataAndDimensions(last, r, 2)}, nil, wargs)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		for _, c := range caches {
			c.FinalizeAll()
		}
	}()
	resp := make([][]int, len(jobs))
	lp := make([]float64, len(jobs))
	tok, pos := make([]int32, r), make([]int32, r)
	v := s.cfg.VocabSize
	for k := 0; k <= rl; k++ {
		for i, j := range jobs {
			row := logits[i*v : (i+1)*v]
			lse := logSumExp(row)
			if k == rl { // after the last response token: score EOS
				lp[i] += float64(row[eos]) - lse
				continue
			}
			id := pickAllowed(row, j.allowed, j.u[k])
			resp[i] = append(resp[i], id)
			lp[i] += float64(row[id]) - lse
			tok[i], pos[i] = int32(id), int32(pl+k)
		}
		if k == rl {
			break
		}
		for i := len(jobs); i < r; i++ {
			tok[i], pos[i] = pad, int32(pl+k)
		}
		var next []*tensors.Tensor
		logits, next, err = s.run(s.step, []any{tensors.FromFlatDataAndDimensions(tok, r), tensors.FromFlatDataAndDimensions(pos, r)}, caches, wargs)
		if err != nil {
			return nil, nil, err
		}
		for _, c := range caches {
			c.FinalizeAll()
		}
		caches = next
	}
	return resp, lp, nil
}

// run executes one graph and returns the logits (host) and the caches.
func (s *sampler) run(e *Exec, args []any, caches []*tensors.Tensor, wargs []any) (logits []float32, next []*tensors.Tensor, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("graph execution panicked: %v", p)
		}
	}()
	for _, c := range caches {
		args = append(args, c)
	}
	outs, err := e.Exec(append(args, wargs...)...)
	if err != nil {
		return nil, nil, err
	}
	logits = tensors.MustCopyFlatData[float32](outs[0])
	outs[0].FinalizeAll()
	return logits, outs[1:], nil
}

func logSumExp(x []float32) float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	s := 0.0
	for _, v := range x {
		s += math.Exp(float64(v) - m)
	}
	return m + math.Log(s)
}

// pickAllowed draws one of the allowed ids from the softmax of their logits
// by inverse CDF with the uniform u in [0, 1).
func pickAllowed(logits []float32, allowed []int, u float64) int {
	m := math.Inf(-1)
	for _, id := range allowed {
		m = math.Max(m, float64(logits[id]))
	}
	p := make([]float64, len(allowed))
	z := 0.0
	for k, id := range allowed {
		p[k] = math.Exp(float64(logits[id]) - m)
		z += p[k]
	}
	acc := 0.0
	for k := range allowed {
		acc += p[k] / z
		if u < acc {
			return allowed[k]
		}
	}
	return allowed[len(allowed)-1]
}
