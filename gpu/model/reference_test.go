package model

import (
	"fmt"
	"math"
	"testing"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// refForward is an independent, loop-by-loop float64 implementation of the
// HF Llama / Gemma-2 forward pass (one sequence), written from the HF
// modelling semantics, to check the graph code's maths: RoPE layout, GQA head
// mapping, norms, soft-capping, sliding window, tied head.
func refForward(c *Config, w map[string]*Tensor, toks []int) [][]float64 {
	T, H := len(toks), c.HiddenSize
	nh, kvh, hd := c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim
	g2 := c.Family() == Gemma2
	gemma := c.gemmaLike()
	mat := func(name string, x []float64) []float64 { // x @ W^T, W [out, in]
		t := w[name]
		out := make([]float64, t.Dims[0])
		for o := range out {
			for i, v := range x {
				out[o] += v * float64(t.Data[o*t.Dims[1]+i])
			}
		}
		return out
	}
	rms := func(name string, x []float64) []float64 {
		ms := 0.0
		for _, v := range x {
			ms += v * v
		}
		ms = math.Sqrt(ms/float64(len(x)) + c.RMSNormEps)
		out := make([]float64, len(x))
		for i, v := range x {
			s := float64(w[name].Data[i])
			if gemma {
				s++
			}
			out[i] = v / ms * s
		}
		return out
	}
	rope := func(v []float64, pos int) {
		for h := 0; h < len(v)/hd; h++ {
			b := v[h*hd : (h+1)*hd]
			for i := 0; i < hd/2; i++ {
				a := float64(pos) / math.Pow(c.RopeTheta, float64(2*i)/float64(hd))
				x1, x2 := b[i], b[i+hd/2]
				b[i], b[i+hd/2] = x1*math.Cos(a)-x2*math.Sin(a), x2*math.Cos(a)+x1*math.Sin(a)
			}
		}
	}
	act := func(x float64) float64 {
		if c.Activation() == "silu" {
			return x / (1 + math.Exp(-x))
		}
		return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
	}
	capf := func(x float64, cp float64) float64 {
		if cp <= 0 {
			return x
		}
		return cp * math.Tanh(x/cp)
	}
	x := make([][]float64, T)
	emb := w["model.embed_tokens.weight"]
	for t, id := range toks {
		x[t] = make([]float64, H)
		for i := range x[t] {
			x[t][i] = float64(emb.Data[id*H+i])
			if gemma {
				x[t][i] *= float64(float32(math.Sqrt(float64(H))))
			}
		}
	}
	for l := 0; l < c.NumHiddenLayers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		q, k, v := make([][]float64, T), make([][]float64, T), make([][]float64, T)
		for t := range x {
			h := rms(p+"input_layernorm.weight", x[t])
			q[t], k[t], v[t] = mat(p+"self_attn.q_proj.weight", h), mat(p+"self_attn.k_proj.weight", h), mat(p+"self_attn.v_proj.weight", h)
			rope(q[t], t)
			rope(k[t], t)
		}
		scale := 1 / math.Sqrt(float64(hd))
		if g2 { // query_pre_attn_scalar is Gemma-2 only
			scale = 1 / math.Sqrt(c.QueryPreAttnScalar)
		}
		window := c.slidingWindow(l)
		for t := range x {
			att := make([]float64, nh*hd)
			for h := 0; h < nh; h++ {
				kv := h / (nh / kvh) // HF repeat_kv: consecutive query heads share a KV head
				sc := make([]float64, t+1)
				mx := math.Inf(-1)
				for s := 0; s <= t; s++ {
					sc[s] = math.Inf(-1)
					if window > 0 && t-s >= window {
						continue
					}
					d := 0.0
					for i := 0; i < hd; i++ {
						d += q[t][h*hd+i] * k[s][kv*hd+i]
					}
					sc[s] = capf(d*scale, c.attnSoftcap())
					mx = math.Max(mx, sc[s])
				}
				z := 0.0
				for s := range sc {
					sc[s] = math.Exp(sc[s] - mx)
					z += sc[s]
				}
				for s := range sc {
					for i := 0; i < hd; i++ {
						att[h*hd+i] += sc[s] / z * v[s][kv*hd+i]
					}
				}
			}
			o := mat(p+"self_attn.o_proj.weight", att)
			if g2 {
				o = rms(p+"post_attention_layernorm.weight", o)
			}
			for i := range o {
				x[t][i] += o[i]
			}
		}
		for t := range x {
			name := p + "post_attention_layernorm.weight"
			if g2 {
				name = p + "pre_feedforward_layernorm.weight"
			}
			h := rms(name, x[t])
			gate, up := mat(p+"mlp.gate_proj.weight", h), mat(p+"mlp.up_proj.weight", h)
			for i := range gate {
				gate[i] = act(gate[i]) * up[i]
			}
			m := mat(p+"mlp.down_proj.weight", gate)
			if g2 {
				m = rms(p+"post_feedforward_layernorm.weight", m)
			}
			for i := range m {
				x[t][i] += m[i]
			}
		}
	}
	head := "model.embed_tokens.weight"
	if !c.Tied() {
		head = "lm_head.weight"
	}
	out := make([][]float64, T)
	for t := range x {
		out[t] = mat(head, rms("model.norm.weight", x[t]))
		for i := range out[t] {
			out[t][i] = capf(out[t][i], c.finalSoftcap())
		}
	}
	return out
}

func TestGraphMatchesReferenceForward(t *testing.T) {
	gemma2, err := ParseConfig([]byte(`{"model_type":"gemma2","vocab_size":259,"hidden_size":32,"intermediate_size":48,
	 "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,"max_position_embeddings":64,
	 "query_pre_attn_scalar":16,"attn_logit_softcapping":5.0,"final_logit_softcapping":3.0,"sliding_window":4}`))
	if err != nil {
		t.Fatal(err)
	}
	gemma, err := ParseConfig([]byte(`{"model_type":"gemma","vocab_size":259,"hidden_size":32,"intermediate_size":48,
	 "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":1,"head_dim":8,"max_position_embeddings":64}`))
	if err != nil {
		t.Fatal(err)
	}
	mistral, err := ParseConfig([]byte(`{"model_type":"mistral","vocab_size":259,"hidden_size":32,"intermediate_size":48,
	 "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":64,"sliding_window":3}`))
	if err != nil {
		t.Fatal(err)
	}
	untied := *TinyConfig()
	f := false
	untied.TieWordEmbeddings = &f
	be, _ := NewBackend(DefaultBackendSpec)
	for name, cfg := range map[string]*Config{"llama-tiny": TinyConfig(), "llama-untied": &untied, "gemma": gemma, "gemma2": gemma2, "mistral-sliding": mistral} {
		t.Run(name, func(t *testing.T) {
			w := InitWeights(cfg, 21)
			// Random norm scales, so 1+w (Gemma) vs w (Llama) matters.
			r := NewRNG(3, "norms")
			for _, x := range w {
				if len(x.Dims) == 1 {
					for i := range x.Data {
						x.Data[i] += float32(0.3 * r.Normal())
					}
				}
			}
			m := &Model{Config: cfg, Weights: w}
			ws, _ := m.DeviceWeights(dtypes.Float64)
			exec, err := NewExec(be, func(in []*Node) *Node {
				wn := BindWeights(cfg, in[1:])
				return Logits(cfg, wn, Hidden(cfg, wn, nil, in[0]))
			})
			if err != nil {
				t.Fatal(err)
			}
			toks := []int{256, 72, 228, 184, 150, 33, 10, 7, 255}
			t32 := make([]int32, len(toks))
			for i, v := range toks {
				t32[i] = int32(v)
			}
			args := []any{tensors.FromFlatDataAndDimensions(t32, 1, len(toks))}
			for _, x := range ws {
				args = append(args, x)
			}
			out, err := exec.Exec(args...)
			if err != nil {
				t.Fatal(err)
			}
			got := tensors.MustCopyFlatData[float64](out[0])
			want := refForward(cfg, w, toks)
			worst := 0.0
			for p := range want {
				for v := range want[p] {
					worst = math.Max(worst, math.Abs(got[p*cfg.VocabSize+v]-want[p][v]))
				}
			}
			// Both in float64 from the same float32 weights: only summation order differs.
			if worst > 1e-9 {
				t.Fatalf("graph vs reference logits differ by %g", worst)
			}
		})
	}
}
