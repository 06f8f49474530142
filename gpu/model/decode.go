package model

import (
	"fmt"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
)

// DecodeStep advances R rows by one token with a KV cache: tok [R] and pos
// [R] (int32; the position tok sits at) and per-layer caches ks, vs
// [R, T, KV, D] as HiddenKV returns them. It writes the new key/value at pos
// and returns the final-norm hidden state [R, H] and the updated caches.
// Every shape is fixed, so one compiled graph serves every step.
func DecodeStep(cfg *Config, w WeightNodes, tok, pos *Node, ks, vs []*Node) (*Node, []*Node, []*Node) {
	g := tok.Graph()
	r := tok.Shape().Dimensions[0]
	t := ks[0].Shape().Dimensions[1]
	nh, kvh, hd := cfg.NumAttentionHeads, cfg.NumKeyValueHeads, cfg.HeadDim
	x := Reshape(embed(cfg, w, tok), r, 1, cfg.HiddenSize)
	dt := x.DType()
	cos, sin := ropeTables(g, cfg, t, dt)
	pos2 := ExpandAxes(pos, -1)                     // [R, 1]
	cosR := Reshape(Gather(cos, pos2), r, 1, 1, hd) // this row's rotation
	sinR := Reshape(Gather(sin, pos2), r, 1, 1, hd)
	oh := Reshape(OneHot(pos, t, dt), r, t, 1, 1) // where the new key/value goes
	keep := OneMinus(oh)
	keys := Iota(g, shapes.Make(dtypes.Int32, r, t), 1) // key position s
	posB := BroadcastToDims(pos2, r, t)
	causal := LessOrEqual(keys, posB)
	newK, newV := make([]*Node, len(ks)), make([]*Node, len(vs))
	for i := 0; i < cfg.NumHiddenLayers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		mask := causal
		if win := cfg.slidingWindow(i); win > 0 {
			mask = LogicalAnd(causal, LessThan(Sub(posB, keys), Scalar(g, dtypes.Int32, win)))
		}
		m := BroadcastToDims(Reshape(mask, r, 1, 1, t), r, nh, 1, t)
		x = layer(cfg, w, nil, p, x, func(h *Node) *Node {
			q, k, v := qkv(cfg, w, nil, p, h)
			q = ropeRows(q, cosR, sinR)
			k = ropeRows(k, cosR, sinR)
			full := func(cache, cur *Node) *Node {
				return Add(Mul(cache, BroadcastToDims(keep, r, t, kvh, hd)),
					Mul(BroadcastToDims(oh, r, t, kvh, hd), BroadcastToDims(cur, r, t, kvh, hd)))
			}
			newK[i], newV[i] = full(ks[i], k), full(vs[i], v)
			return linear(w, nil, p+"self_attn.o_proj.weight", attend(cfg, q, newK[i], newV[i], m))
		})
	}
	return Reshape(rmsNorm(cfg, x, w["model.norm.weight"]), r, cfg.HiddenSize), newK, newV
}

// ropeRows rotates x [R, 1, heads, D] by per-row tables [R, 1, 1, D].
func ropeRows(x, cos, sin *Node) *Node {
	d := x.Shape().Dimensions
	hd := d[3]
	x1 := SliceAxis(x, 3, AxisRange(0, hd/2))
	x2 := SliceAxis(x, 3, AxisRange(hd/2, hd))
	rot := Concatenate([]*Node{Neg(x2), x1}, 3)
	return Add(Mul(x, BroadcastToDims(cos, d...)), Mul(rot, BroadcastToDims(sin, d...)))
}
