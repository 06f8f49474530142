package dpo

import (
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads like maths

	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/gpu/model"
)

// graph input layout (fixed per Extractor; see buildInputs):
//
//	0 tokens [2B,T] int32   rows 0..B-1 chosen, B..2B-1 rejected (row n is pair n % B)
//	1 gidx   [2B*T,2] int32 (flat position, next token) for gathering target log-probs
//	2 mask   [2B,T]          1 where the next token is a scored response token
//	3 lenDiff [B]            |y_w| - |y_l|
//	then the sketch constants (countsketch: buckets [d,1] int32 and signs [d];
//	gaussian: matrix [d,K]; exact mode: none), the LoRA tensors (unbatched), the base weights.
const fixedInputs = 4

type graphMode struct {
	exact      bool // return full per-pair gradients [B,d] instead of sketches
	refForward bool // compute log π_ref with a LoRA-free forward pass
	gradOnly   bool // return per-pair gradient norms [B,1] instead of sketches (benchmarks)
}

func (x *Extractor) numSketchInputs(m graphMode) int {
	switch {
	case m.exact, m.gradOnly:
		return 0
	case x.opts.Sketch.Method == sketch.Gaussian:
		return 1
	default:
		return 2
	}
}

// graphFn builds the batched LP-DPO graph. LoRA tensors enter unbatched and
// are broadcast to one copy per pair; the gradient of Σ_i ℓ_i with respect to
// copy i is exactly g_i, because ℓ_j (j≠i) does not depend on copy i.
func (x *Extractor) graphFn(m graphMode) func(in []*Node) []*Node {
	cfg := x.m.Config
	return func(in []*Node) []*Node {
		tokens, gidx, mask, lenDiff := in[0], in[1], in[2], in[3]
		g := tokens.Graph()
		b := tokens.Shape().Dimensions[0] / 2
		ns := x.numSketchInputs(m)
		sk := in[fixedInputs : fixedInputs+ns]
		loraIn := in[fixedInputs+ns : fixedInputs+ns+len(x.params)]
		w := model.BindWeights(cfg, in[fixedInputs+ns+len(x.params):])

		lora := &model.LoRANodes{Scale: x.opts.LoRA.Scale(), A: map[string]*Node{}, B: map[string]*Node{}}
		copies := make([]*Node, len(x.params))
		for i, p := range x.params {
			dims := append([]int{b}, p.Dims...)
			copies[i] = BroadcastToDims(InsertAxes(loraIn[i], 0), dims...)
			if p.IsA {
				lora.A[p.Base] = copies[i]
			} else {
				lora.B[p.Base] = copies[i]
			}
		}
		seqLogp := func(l *model.LoRANodes) *Node { return SeqLogProbs(cfg, w, l, tokens, gidx, mask) } // [2B]
		pol := seqLogp(lora)
		var ref *Node
		if m.refForward {
			ref = StopGradient(seqLogp(nil))
		} else {
			// With every B = 0 the adapter adds exactly 0, so π_θ = π_ref bit for bit.
			ref = StopGradient(pol)
		}
		half := func(v *Node, i int) *Node { return SliceAxis(v, 0, AxisRange(i*b, (i+1)*b)) }
		polW, polL, refW, refL := half(pol, 0), half(pol, 1), half(ref, 0), half(ref, 1)
		loss, z := Objective(polW, polL, refW, refL, lenDiff, x.opts.Beta, x.opts.Alpha)
		grads := Gradient(ReduceAllSum(loss), copies...)
		flat := make([]*Node, len(grads))
		for i, gr := range grads {
			flat[i] = Reshape(gr, b, -1)
		}
		gall := Concatenate(flat, 1) // [B, d], parameters in x.params order, each row-major
		absSum := ReduceSum(Abs(gall), -1)
		var out *Node
		switch {
		case m.exact:
			out = gall
		case m.gradOnly:
			out = Sqrt(ReduceAndKeep(Square(gall), ReduceSum, -1))
		case x.opts.Sketch.Method == sketch.Gaussian:
			out = DotGeneral(gall, []int{1}, nil, sk[0], []int{0}, nil) // [B,K]
		default:
			// countsketch: s[h(j)] += σ(j) g[j], as a scatter of the [d, B] columns.
			signed := Mul(gall, BroadcastToDims(InsertAxes(sk[1], 0), b, x.d))
			acc := Scatter(sk[0], Transpose(signed, 0, 1), shapes.Make(gall.DType(), x.opts.Sketch.K, b), false, false)
			out = Transpose(acc, 0, 1)
		}
		_ = g
		return []*Node{out, loss, z, refW, refL, absSum}
	}
}

func softplus(x *Node) *Node {
	// max(x,0) + log(1 + exp(-|x|)): no overflow for any finite x.
	return Add(Max(x, ZerosLike(x)), Log(AddScalar(Exp(Neg(Abs(x))), 1)))
}

var _ = dtypes.Int32
