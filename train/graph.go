package train

import (
	"math"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads like maths
)

// baseNodes are the frozen weights inside a graph, in Base.tensors() order.
type baseNodes struct {
	embed, pos, finalNorm                *Node
	norm1, norm2, wq, wk, wv, wo, w1, w2 []*Node
}

func unpackBase(cfg Config, in []*Node) (baseNodes, []*Node) {
	b := baseNodes{embed: in[0], pos: in[1], finalNorm: in[2]}
	in = in[3:]
	for l := 0; l < cfg.Layers; l++ {
		b.norm1 = append(b.norm1, in[0])
		b.norm2 = append(b.norm2, in[1])
		b.wq = append(b.wq, in[2])
		b.wk = append(b.wk, in[3])
		b.wv = append(b.wv, in[4])
		b.wo = append(b.wo, in[5])
		b.w1 = append(b.w1, in[6])
		b.w2 = append(b.w2, in[7])
		in = in[8:]
	}
	return b, in
}

func numBaseInputs(cfg Config) int { return 3 + 8*cfg.Layers }
func numLoRAInputs(cfg Config) int { return 4 * cfg.Layers }

func rmsNorm(x, g *Node) *Node {
	ms := ReduceAndKeep(Square(x), ReduceMean, -1)
	dims := x.Shape().Dimensions
	scaled := Mul(x, BroadcastToDims(Inverse(Sqrt(AddScalar(ms, 1e-6))), dims...))
	return Mul(scaled, BroadcastPrefix(g, dims[:len(dims)-1]...))
}

// loraDelta is scale·(h A) B. With perExample the factors carry a leading
// axis of size N (one copy per sequence), which is how one backward pass
// yields per-sequence gradients.
func loraDelta(h, a, b *Node, scale float64, perExample bool) *Node {
	var ha *Node
	if perExample {
		ha = Einsum("ntd,ndr->ntr", h, a)
		ha = Einsum("ntr,nre->nte", ha, b)
	} else {
		ha = Einsum("ntd,dr->ntr", h, a)
		ha = Einsum("ntr,re->nte", ha, b)
	}
	return MulScalar(ha, scale)
}

// seqLogProb returns, per sequence, the sum of log-probabilities of the
// tokens selected by mask: mask[n,t]=1 scores token t+1 given tokens ≤ t.
// tokens are int32 [N,T]; lora holds 4·Layers nodes (A_q,B_q,A_v,B_v per layer).
func seqLogProb(cfg Config, b baseNodes, lora []*Node, perExample bool, tokens, mask *Node) *Node {
	n, t := tokens.Shape().Dimensions[0], tokens.Shape().Dimensions[1]
	d, heads := cfg.Dim, cfg.Heads
	dh := d / heads
	g := tokens.Graph()
	scale := cfg.LoRAAlpha / float64(cfg.LoRARank)

	oneHot := OneHot(tokens, VocabSize, dtypes.Float32)      // [N,T,V]
	x := Einsum("ntv,vd->ntd", oneHot, b.embed)              // [N,T,D]
	pos := Slice(b.pos, AxisRange(0, t), AxisRange())        // [T,D]
	x = Add(x, BroadcastToDims(ExpandAxes(pos, 0), n, t, d)) // learned positions
	rows := Iota(g, shapes.Make(dtypes.Int32, t, t), 0)
	cols := Iota(g, shapes.Make(dtypes.Int32, t, t), 1)
	causal := BroadcastToDims(ExpandAxes(GreaterOrEqual(rows, cols), 0, 1), n, heads, t, t)
	negInf := BroadcastToDims(Scalar(g, dtypes.Float32, -1e9), n, heads, t, t)

	for l := 0; l < cfg.Layers; l++ {
		h := rmsNorm(x, b.norm1[l])
		q := Einsum("ntd,de->nte", h, b.wq[l])
		k := Einsum("ntd,de->nte", h, b.wk[l])
		v := Einsum("ntd,de->nte", h, b.wv[l])
		la := lora[4*l:]
		q = Add(q, loraDelta(h, la[0], la[1], scale, perExample))
		v = Add(v, loraDelta(h, la[2], la[3], scale, perExample))
		q = Reshape(q, n, t, heads, dh)
		k = Reshape(k, n, t, heads, dh)
		v = Reshape(v, n, t, heads, dh)
		scores := MulScalar(Einsum("nqhd,nkhd->nhqk", q, k), 1/math.Sqrt(float64(dh)))
		scores = Where(causal, scores, negInf)
		att := Softmax(scores, -1)
		o := Reshape(Einsum("nhqk,nkhd->nqhd", att, v), n, t, d)
		x = Add(x, Einsum("ntd,de->nte", o, b.wo[l]))

		h2 := rmsNorm(x, b.norm2[l])
		f := Einsum("ntd,df->ntf", h2, b.w1[l])
		f = Mul(f, Sigmoid(MulScalar(f, 1.702))) // GELU (sigmoid approximation)
		x = Add(x, Einsum("ntf,fd->ntd", f, b.w2[l]))
	}
	x = rmsNorm(x, b.finalNorm)
	logits := Einsum("ntd,vd->ntv", x, b.embed)
	logp := LogSoftmax(logits, -1) // [N,T,V]
	// Target of position t is token t+1; the last position has no target.
	next := Concatenate([]*Node{Slice(tokens, AxisRange(), AxisRange(1, t)), Slice(tokens, AxisRange(), AxisRange(0, 1))}, 1)
	tok := ReduceSum(Mul(logp, OneHot(next, VocabSize, dtypes.Float32)), -1) // [N,T]
	return ReduceSum(Mul(tok, mask), -1)                                     // [N]
}

// dpoLoss builds the LP-DPO loss of B pairs whose chosen sequences are rows
// 0..B-1 and rejected rows B..2B-1 of tokens/mask.
// z = β[(lπ(w) − lref(w)) − (lπ(l) − lref(l))] − α(|w| − |l|); ℓ = softplus(−z).
func dpoLoss(seqLogp, refW, refL, lenDiff *Node, beta, alpha float64) (loss, z *Node) {
	bsz := refW.Shape().Dimensions[0]
	lw := Slice(seqLogp, AxisRange(0, bsz))
	ll := Slice(seqLogp, AxisRange(bsz, 2*bsz))
	z = Sub(MulScalar(Sub(Sub(lw, refW), Sub(ll, refL)), beta), MulScalar(lenDiff, alpha))
	return Softplus(Neg(z)), z
}
