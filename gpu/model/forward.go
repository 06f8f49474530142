package model

import (
	"fmt"
	"math"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph-building code reads like maths with dot-import, as in GoMLX's own models
)

// LoRANodes are the adapter tensors inside a graph, keyed by the base weight's
// HF name (e.g. "model.layers.0.self_attn.q_proj.weight"). A is [G, r, in] and
// B is [G, out, r] (PEFT layouts with a leading group axis); sequence n of the
// batch uses group n % G, so G per-pair copies give per-pair gradients in one
// backward pass.
type LoRANodes struct {
	Scale float64 // alpha / rank
	A, B  map[string]*Node
}

// WeightNodes maps HF weight names to graph nodes.
type WeightNodes map[string]*Node

// BindWeights turns the graph inputs (WeightShapes order) into named nodes.
func BindWeights(cfg *Config, inputs []*Node) WeightNodes {
	w := WeightNodes{}
	for i, s := range cfg.WeightShapes() {
		w[s.Name] = inputs[i]
	}
	return w
}

// Hidden runs the decoder on tokens [N, T] (int32, right-padded; positions
// are 0..T-1 for every row, and the causal mask keeps valid positions from
// seeing the padding after them) and returns the final-norm hidden states [N, T, H].
func Hidden(cfg *Config, w WeightNodes, lora *LoRANodes, tokens *Node) *Node {
	h, _, _ := HiddenKV(cfg, w, lora, tokens)
	return h
}

// HiddenKV is Hidden that also returns each layer's keys and values
// [N, T, KV, D] (keys after RoPE), the prefill of a KV cache.
func HiddenKV(cfg *Config, w WeightNodes, lora *LoRANodes, tokens *Node) (*Node, []*Node, []*Node) {
	g := tokens.Graph()
	n, t := tokens.Shape().Dimensions[0], tokens.Shape().Dimensions[1]
	x := embed(cfg, w, tokens)
	cos, sin := ropeTables(g, cfg, t, x.DType())
	causal := LowerTriangular(g, t) // [T, T] bool, key s <= query t
	var ks, vs []*Node
	for i := 0; i < cfg.NumHiddenLayers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		mask := causal
		if win := cfg.slidingWindow(i); win > 0 {
			mask = LogicalAnd(causal, slidingMask(g, t, win))
		}
		x = layer(cfg, w, lora, p, x, func(h *Node) *Node {
			q, k, v := qkv(cfg, w, lora, p, h)
			q, k = rope(q, cos, sin), rope(k, cos, sin)
			ks, vs = append(ks, k), append(vs, v)
			m := BroadcastToDims(Reshape(mask, 1, 1, t, t), n, cfg.NumAttentionHeads, t, t)
			out := attend(cfg, q, k, v, m)
			return linear(w, lora, p+"self_attn.o_proj.weight", out)
		})
	}
	return rmsNorm(cfg, x, w["model.norm.weight"]), ks, vs
}

func embed(cfg *Config, w WeightNodes, tokens *Node) *Node {
	x := Gather(w["model.embed_tokens.weight"], ExpandAxes(tokens, -1))
	if cfg.gemmaLike() {
		// Gemma scales embeddings by sqrt(hidden), rounded to the compute dtype as HF does.
		x = MulScalar(x, float64(float32(math.Sqrt(float64(cfg.HiddenSize)))))
	}
	return x
}

// layer applies one decoder block around the given attention function.
func layer(cfg *Config, w WeightNodes, lora *LoRANodes, p string, x *Node, attn func(*Node) *Node) *Node {
	h := attn(rmsNorm(cfg, x, w[p+"input_layernorm.weight"]))
	if cfg.Family() == Gemma2 {
		h = rmsNorm(cfg, h, w[p+"post_attention_layernorm.weight"])
		x = Add(x, h)
		h = rmsNorm(cfg, x, w[p+"pre_feedforward_layernorm.weight"])
		h = mlp(cfg, w, lora, p, h)
		h = rmsNorm(cfg, h, w[p+"post_feedforward_layernorm.weight"])
	} else {
		x = Add(x, h)
		h = rmsNorm(cfg, x, w[p+"post_attention_layernorm.weight"])
		h = mlp(cfg, w, lora, p, h)
	}
	return Add(x, h)
}

// Logits projects hidden states [..., H] to vocabulary logits [..., V].
func Logits(cfg *Config, w WeightNodes, hidden *Node) *Node {
	head := w["model.embed_tokens.weight"]
	if !cfg.Tied() {
		head = w["lm_head.weight"]
	}
	dims := hidden.Shape().Dimensions
	flat := Reshape(hidden, -1, dims[len(dims)-1])
	logits := DotGeneral(flat, []int{1}, nil, head, []int{1}, nil)
	if c := cfg.finalSoftcap(); c > 0 {
		logits = softcap(logits, c)
	}
	out := append(append([]int{}, dims[:len(dims)-1]...), cfg.VocabSize)
	return Reshape(logits, out...)
}

func softcap(x *Node, c float64) *Node { return MulScalar(Tanh(DivScalar(x, c)), c) }

func rmsNorm(cfg *Config, x, w *Node) *Node {
	ms := ReduceAndKeep(Square(x), ReduceMean, -1)
	// Div by Sqrt rather than Rsqrt: GoMLX defines no gradient for Rsqrt.
	y := Div(x, bcast(Sqrt(AddScalar(ms, cfg.RMSNormEps)), x))
	if cfg.gemmaLike() {
		w = AddScalar(w, 1) // Gemma stores the scale as an offset from 1
	}
	return Mul(y, bcast(w, y))
}

// bcast broadcasts x to like's shape, aligning trailing axes (numpy rules):
// GoMLX binary ops only broadcast scalars implicitly.
func bcast(x, like *Node) *Node {
	return BroadcastToDims(ExpandLeftToRank(x, like.Rank()), like.Shape().Dimensions...)
}

// linear applies an HF [out, in] weight to x [N, T, in], plus the LoRA delta
// when name is adapted.
func linear(w WeightNodes, lora *LoRANodes, name string, x *Node) *Node {
	W := w[name]
	d := x.Shape().Dimensions
	// x·Wᵀ with Wᵀ [in, out] materialised (a copy of the weight per call):
	// row-major for the products below the small-matrix threshold (few rows:
	// short sequences, decoding, the tiny model); see bmm.
	y := bmm(Reshape(x, 1, -1, d[2]), InsertAxes(Transpose(W, 0, 1), 0))
	y = Reshape(y, d[0], d[1], W.Shape().Dimensions[0])
	if lora == nil {
		return y
	}
	a, ok := lora.A[name]
	if !ok {
		return y
	}
	b := lora.B[name]
	groups := a.Shape().Dimensions[0]
	out := W.Shape().Dimensions[0]
	// Row n uses group n % G: gather each group's rows, [N/G, G, T, in] ->
	// [G, N/G·T, in], so both rank-r products are batched over G in the
	// row-major layout (see bmm).
	k := d[0] / groups
	xg := Reshape(Transpose(Reshape(x, k, groups, d[1], d[2]), 0, 1), groups, k*d[1], d[2])
	xa := bmm(xg, Transpose(a, 1, 2))    // [G, N/G·T, r]
	delta := bmm(xa, Transpose(b, 1, 2)) // [G, N/G·T, out]
	delta = Reshape(Transpose(Reshape(delta, groups, k, d[1], out), 0, 1), d[0], d[1], out)
	return Add(y, MulScalar(delta, lora.Scale))
}

// bmm is a·b for a [B, N, K] and b [B, K, M] (one batch axis), written so
// that every product of it and of its gradient reaches the Go backend in the
// row-major ("non-transposed") layout lhs [B, N, K], rhs [B, K, M].
//
// Why: with GOEXPERIMENT=simd, GoMLX's Go backend sends any product whose
// per-batch-element size N·K·M is below 4 Mi to a small-matrix AVX2 kernel.
// For the row-major layout that kernel is register-blocked (4 rows × 16
// columns of FMAs); for the transposed layout (rhs [B, M, K]), and for any
// layout it must first transpose to, it computes one dot product and one
// horizontal sum per output element, 10-35× slower on the attention and
// LoRA shapes (docs/perf/gradients-cpu.md). Einsum and GoMLX's own gradient
// of DotGeneral produce those layouts: the gradient with respect to the rhs
// always contracts the output gradient on a non-last axis. So bmm supplies
// its own backward pass, da = dy·bᵀ and db = aᵀ·dy with bᵀ and aᵀ
// materialised (a copy each, O(size), against O(N·K·M) for the product).
//
// The custom gradient uses IdentityWithCustomGradient three times: on the
// output, to capture dy when the reverse pass reaches it (it reaches the
// output before the inputs, which were built earlier), and on each input, to
// return the product above in place of the gradient GoMLX derives through
// the DotGeneral (those nodes are left unused, and the backend drops them).
func bmm(a, b *Node) *Node {
	var dy *Node
	sa, sb := StopGradient(a), StopGradient(b)
	ta := IdentityWithCustomGradient(a, func(_, _ *Node) *Node { return bmmRaw(dy, Transpose(sb, 1, 2)) })
	tb := IdentityWithCustomGradient(b, func(_, _ *Node) *Node { return bmmRaw(Transpose(sa, 1, 2), dy) })
	return IdentityWithCustomGradient(bmmRaw(ta, tb), func(_, v *Node) *Node {
		dy = v
		return v
	})
}

func bmmRaw(a, b *Node) *Node { return DotGeneral(a, []int{2}, []int{0}, b, []int{1}, []int{0}) }

// qkv projects x [N, T, H] to q [N,T,heads,D] and k, v [N,T,KV,D].
func qkv(cfg *Config, w WeightNodes, lora *LoRANodes, p string, x *Node) (*Node, *Node, *Node) {
	d := x.Shape().Dimensions
	n, t := d[0], d[1]
	nh, kvh, hd := cfg.NumAttentionHeads, cfg.NumKeyValueHeads, cfg.HeadDim
	q := Reshape(linear(w, lora, p+"self_attn.q_proj.weight", x), n, t, nh, hd)
	k := Reshape(linear(w, lora, p+"self_attn.k_proj.weight", x), n, t, kvh, hd)
	v := Reshape(linear(w, lora, p+"self_attn.v_proj.weight", x), n, t, kvh, hd)
	return q, k, v
}

// attend is softmax(q·kᵀ·scale) v for q [N,T,heads,D], k/v [N,S,KV,D] and a
// boolean mask [N, heads, T, S]; it returns [N, T, heads·D].
func attend(cfg *Config, q, k, v, mask *Node) *Node {
	n, t, s := q.Shape().Dimensions[0], q.Shape().Dimensions[1], k.Shape().Dimensions[1]
	nh, kvh, hd := cfg.NumAttentionHeads, cfg.NumKeyValueHeads, cfg.HeadDim
	// Grouped-query attention: each KV head serves rep = heads/KV consecutive
	// query heads, so the queries of one KV head are rows [rep·T] of one
	// product against that head's keys (no repeated K/V). Products per
	// (sequence, KV head), row-major (see bmm): [rep·T, D]·[D, S] and [rep·T, S]·[S, D].
	rep := nh / kvh
	qh := Reshape(Transpose(q, 1, 2), n*kvh, rep*t, hd)          // [n,heads,T,D]
	kT := Reshape(TransposeAllAxes(k, 0, 2, 3, 1), n*kvh, hd, s) // [n,KV,D,S]
	vh := Reshape(Transpose(v, 1, 2), n*kvh, s, hd)              // [n,KV,S,D]
	scores := MulScalar(Reshape(bmm(qh, kT), n, nh, t, s), cfg.attnScale())
	if c := cfg.attnSoftcap(); c > 0 {
		scores = softcap(scores, c)
	}
	scores = Where(mask, scores, BroadcastToDims(Scalar(q.Graph(), scores.DType(), -1e9), n, nh, t, s))
	probs := Softmax(scores, -1)
	out := bmm(Reshape(probs, n*kvh, rep*t, s), vh) // [n·KV, rep·T, D] = [n, heads, T, D]
	return Reshape(Transpose(Reshape(out, n, nh, t, hd), 1, 2), n, t, nh*hd)
}

func mlp(cfg *Config, w WeightNodes, lora *LoRANodes, p string, x *Node) *Node {
	gate := linear(w, lora, p+"mlp.gate_proj.weight", x)
	up := linear(w, lora, p+"mlp.up_proj.weight", x)
	var act *Node
	switch cfg.Activation() {
	case "silu", "swish":
		act = Mul(gate, Logistic(gate))
	default: // gelu_pytorch_tanh / gelu_new (Validate admits nothing else), as Gemma uses
		c := math.Sqrt(2 / math.Pi)
		inner := MulScalar(Add(gate, MulScalar(Mul(gate, Square(gate)), 0.044715)), c)
		act = Mul(MulScalar(gate, 0.5), AddScalar(Tanh(inner), 1))
	}
	return linear(w, lora, p+"mlp.down_proj.weight", Mul(act, up))
}

// ropeTables builds HF-convention rotary tables [T, D]: frequencies for the
// first half repeated for the second half (rotate_half layout).
func ropeTables(g *Graph, cfg *Config, t int, dt dtypes.DType) (*Node, *Node) {
	d := cfg.HeadDim
	cos := make([]float64, t*d)
	sin := make([]float64, t*d)
	for pos := 0; pos < t; pos++ {
		for i := 0; i < d/2; i++ {
			inv := 1 / math.Pow(cfg.RopeTheta, float64(2*i)/float64(d))
			a := float64(pos) * inv
			c, s := math.Cos(a), math.Sin(a)
			cos[pos*d+i], cos[pos*d+i+d/2] = c, c
			sin[pos*d+i], sin[pos*d+i+d/2] = s, s
		}
	}
	mk := func(v []float64) *Node {
		return ConvertDType(Reshape(Const(g, v), t, d), dt)
	}
	return mk(cos), mk(sin)
}

// rope rotates x [N, T, H, D] by position.
func rope(x, cos, sin *Node) *Node {
	d := x.Shape().Dimensions
	hd := d[3]
	c := Reshape(cos, 1, d[1], 1, hd)
	s := Reshape(sin, 1, d[1], 1, hd)
	x1 := SliceAxis(x, 3, AxisRange(0, hd/2))
	x2 := SliceAxis(x, 3, AxisRange(hd/2, hd))
	rot := Concatenate([]*Node{Neg(x2), x1}, 3)
	return Add(Mul(x, BroadcastToDims(c, d...)), Mul(rot, BroadcastToDims(s, d...)))
}

// slidingMask keeps keys within window positions of the query (HF Gemma-2
// and Mistral: t-s < window).
func slidingMask(g *Graph, t, window int) *Node {
	q := Iota(g, shapes.Make(dtypes.Int32, t, t), 0)
	k := Iota(g, shapes.Make(dtypes.Int32, t, t), 1)
	return LessThan(Sub(q, k), Scalar(g, dtypes.Int32, window))
}
