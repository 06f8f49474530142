package generate

import (
	"fmt"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/congrad-beam/congrad/gpu/model"
)

// kvExecs are the two graphs of cached decoding: prefill (full padded rows
// -> next-token logits and every layer's K/V) and step (one token per row
// against the cache -> logits and the updated cache). The caches stay
// backend tensors between calls; only [R, V] logits come to the host.
type kvExecs struct {
	prefill, step *Exec
}

func (g *Generator) kv() (*kvExecs, error) {
	g.kvOnce.Do(func() {
		cfg := g.m.Config
		nl := cfg.NumHiddenLayers
		pre, err := NewExec(g.m.Backend, func(in []*Node) []*Node {
			w := model.BindWeights(cfg, in[2:])
			h, ks, vs := model.HiddenKV(cfg, w, nil, in[0])
			out := []*Node{model.Logits(cfg, w, Gather(h, in[1]))}
			return append(append(out, ks...), vs...)
		})
		if err != nil {
			g.kvErr = err
			return
		}
		step, err := NewExec(g.m.Backend, func(in []*Node) []*Node {
			ks, vs := in[2:2+nl], in[2+nl:2+2*nl]
			w := model.BindWeights(cfg, in[2+2*nl:])
			h, nk, nv := model.DecodeStep(cfg, w, in[0], in[1], ks, vs)
			out := []*Node{model.Logits(cfg, w, h)}
			return append(append(out, nk...), nv...)
		})
		if err != nil {
			g.kvErr = err
			return
		}
		pre.SetMaxCache(64)
		step.SetMaxCache(64)
		g.kvx = &kvExecs{prefill: pre, step: step}
	})
	return g.kvx, g.kvErr
}

// decoder holds the cache of one Generate call (fixed R rows, T positions).
type decoder struct {
	g      *Generator
	t      int
	caches []*tensors.Tensor // ks then vs, each [R, T, KV, D]
}

func (d *decoder) free() {
	for _, c := range d.caches {
		c.FinalizeAll()
	}
	d.caches = nil
}

// prefill recomputes every row from its full sequence (nil rows are padding)
// and returns the next-token logits per row.
func (d *decoder) prefill(seqs [][]int) ([][]float32, error) {
	x, err := d.g.kv()
	if err != nil {
		return nil, fmt.Errorf("generate: build graphs: %w", err)
	}
	r, t := d.g.rows, d.t
	pad := int32(d.g.m.Tok.PAD())
	toks := make([]int32, r*t)
	last := make([]int32, 2*r)
	for i := 0; i < r; i++ {
		for p := 0; p < t; p++ {
			toks[i*t+p] = pad
		}
		last[2*i] = int32(i)
		if i < len(seqs) && len(seqs[i]) > 0 {
			for p, id := range seqs[i] {
				toks[i*t+p] = int32(id)
			}
			last[2*i+1] = int32(len(seqs[i]) - 1)
		}
	}
	args := []any{tensors.FromFlatDataAndDimensions(toks, r, t), tensors.FromFlatDataAndDimensions(last, r, 2)}
	return d.run(x.prefill, args)
}

// step feeds tok[i] at position pos[i] for every row.
func (d *decoder) step(tok, pos []int32) ([][]float32, error) {
	x, err := d.g.kv()
	if err != nil {
		return nil, err
	}
	args := []any{tensors.FromFlatDataAndDimensions(tok, len(tok)), tensors.FromFlatDataAndDimensions(pos, len(pos))}
	for _, c := range d.caches {
		args = append(args, c)
	}
	return d.run(x.step, args)
}

func (d *decoder) run(e *Exec, args []any) ([][]float32, error) {
	ws, err := d.g.m.DeviceWeights(dtypes.Float32)
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		args = append(args, w)
	}
	outs, err := safeExec(e, args)
	if err != nil {
		return nil, fmt.Errorf("generate: %d rows, %d positions: %w", d.g.rows, d.t, err)
	}
	d.free()
	d.caches = outs[1:]
	flat := tensors.MustCopyFlatData[float32](outs[0])
	outs[0].FinalizeAll()
	v := d.g.m.Config.VocabSize
	res := make([][]float32, d.g.rows)
	for i := range res {
		res[i] = flat[i*v : (i+1)*v]
	}
	return res, nil
}
