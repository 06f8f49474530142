// Package train is a small LP-DPO LoRA trainer for the embedded tiny model
// family: a decoder-only transformer (RMSNorm, learned positions, causal
// multi-head attention, GELU MLP, tied embeddings) with LoRA adapters on the
// query and value projections, written as GoMLX graph functions and
// differentiated with GoMLX autodiff. Adam runs on the host.
//
// It is meant for tests and controlled experiments (see experiment/); large
// models are trained with TRL on the kept-pairs Parquet the pipeline writes.
//
// The forward pass lives here rather than in gpu/model because gpu/model was
// not committed when this trainer was written; the weights are plain host
// float32 slices named like HF tensors, so the two can be joined later.
package train

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
)

// Byte-level vocabulary: 256 byte values plus BOS and SEP (prompt/response boundary).
const (
	BOS       = 256
	SEP       = 257
	VocabSize = 258
)

// ErrConfig is wrapped by every configuration validation error.
var ErrConfig = errors.New("invalid config")

// Config is the architecture of the tiny model and its LoRA adapters.
type Config struct {
	Dim       int     // model width
	Layers    int     // transformer blocks
	Heads     int     // attention heads (Dim % Heads == 0)
	FF        int     // MLP hidden width
	MaxLen    int     // longest sequence (BOS + prompt + SEP + response)
	LoRARank  int     // rank r of the q/v adapters
	LoRAAlpha float64 // LoRA scale is LoRAAlpha / LoRARank
}

// TinyConfig is the default embedded model: small enough for exact per-pair
// gradients and many training runs on two CPU cores.
func TinyConfig() Config {
	return Config{Dim: 32, Layers: 2, Heads: 2, FF: 64, MaxLen: 32, LoRARank: 8, LoRAAlpha: 16}
}

// Validate checks the configuration once.
func (c Config) Validate() error {
	switch {
	case c.Dim <= 0 || c.Layers <= 0 || c.Heads <= 0 || c.FF <= 0 || c.MaxLen < 3 || c.LoRARank <= 0:
		return fmt.Errorf("%w: all sizes must be positive (MaxLen >= 3): %+v", ErrConfig, c)
	case c.Dim%c.Heads != 0:
		return fmt.Errorf("%w: Dim %d not divisible by Heads %d", ErrConfig, c.Dim, c.Heads)
	case c.LoRAAlpha <= 0 || math.IsNaN(c.LoRAAlpha):
		return fmt.Errorf("%w: LoRAAlpha must be > 0, got %v", ErrConfig, c.LoRAAlpha)
	}
	return nil
}

// Tensor is a host float32 tensor, row-major.
type Tensor struct {
	Dims []int
	Data []float32
}

func newTensor(dims ...int) *Tensor {
	n := 1
	for _, d := range dims {
		n *= d
	}
	return &Tensor{Dims: append([]int(nil), dims...), Data: make([]float32, n)}
}

// Clone returns a deep copy.
func (t *Tensor) Clone() *Tensor {
	return &Tensor{Dims: append([]int(nil), t.Dims...), Data: append([]float32(nil), t.Data...)}
}

// Base holds the frozen weights. Embed is [VocabSize, Dim] and also the
// output projection (tied). Per-layer tensors are indexed by layer.
type Base struct {
	Cfg            Config
	Embed          *Tensor   // [V, D]
	Pos            *Tensor   // [MaxLen, D]
	Norm1, Norm2   []*Tensor // [D]
	Wq, Wk, Wv, Wo []*Tensor // [D, D]
	W1             []*Tensor // [D, FF]
	W2             []*Tensor // [FF, D]
	FinalNorm      *Tensor   // [D]
}

// NewBase initialises frozen weights deterministically from seed
// (N(0, 1/fan_in) matrices, unit norms, N(0,1) embeddings).
func NewBase(cfg Config, seed uint64) (*Base, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 0x6261736577)) // "basew"
	fill := func(t *Tensor, std float64) *Tensor {
		for i := range t.Data {
			t.Data[i] = float32(rng.NormFloat64() * std)
		}
		return t
	}
	ones := func() *Tensor {
		t := newTensor(cfg.Dim)
		for i := range t.Data {
			t.Data[i] = 1
		}
		return t
	}
	d := cfg.Dim
	b := &Base{Cfg: cfg, Embed: fill(newTensor(VocabSize, d), 1), Pos: fill(newTensor(cfg.MaxLen, d), 0.1)}
	isd := 1 / math.Sqrt(float64(d))
	for l := 0; l < cfg.Layers; l++ {
		b.Norm1 = append(b.Norm1, ones())
		b.Norm2 = append(b.Norm2, ones())
		b.Wq = append(b.Wq, fill(newTensor(d, d), isd))
		b.Wk = append(b.Wk, fill(newTensor(d, d), isd))
		b.Wv = append(b.Wv, fill(newTensor(d, d), isd))
		b.Wo = append(b.Wo, fill(newTensor(d, d), isd*0.5))
		b.W1 = append(b.W1, fill(newTensor(d, cfg.FF), isd))
		b.W2 = append(b.W2, fill(newTensor(cfg.FF, d), 0.5/math.Sqrt(float64(cfg.FF))))
	}
	b.FinalNorm = ones()
	return b, nil
}

// tensors lists the base weights in the fixed order the graphs expect.
func (b *Base) tensors() []*Tensor {
	out := []*Tensor{b.Embed, b.Pos, b.FinalNorm}
	for l := 0; l < b.Cfg.Layers; l++ {
		out = append(out, b.Norm1[l], b.Norm2[l], b.Wq[l], b.Wk[l], b.Wv[l], b.Wo[l], b.W1[l], b.W2[l])
	}
	return out
}

// LoRA holds the trainable adapters: per layer A_q [D,r], B_q [r,D], A_v, B_v.
type LoRA struct {
	Names  []string  // "layers.{l}.self_attn.{q,v}_proj.lora_{A,B}", in Params order
	Params []*Tensor // same order as Names
}

// NewLoRA returns fresh adapters: A ~ N(0, 1/D), B = 0, so the adapted model
// starts equal to the base model (and only the B factors get a gradient).
func NewLoRA(cfg Config, seed uint64) *LoRA {
	rng := rand.New(rand.NewPCG(seed, 0x6c6f7261)) // "lora"
	lo := &LoRA{}
	for l := 0; l < cfg.Layers; l++ {
		for _, proj := range []string{"q", "v"} {
			a := newTensor(cfg.Dim, cfg.LoRARank)
			for i := range a.Data {
				a.Data[i] = float32(rng.NormFloat64() / math.Sqrt(float64(cfg.Dim)))
			}
			prefix := fmt.Sprintf("layers.%d.self_attn.%s_proj.", l, proj)
			lo.Names = append(lo.Names, prefix+"lora_A", prefix+"lora_B")
			lo.Params = append(lo.Params, a, newTensor(cfg.LoRARank, cfg.Dim))
		}
	}
	return lo
}

// Clone returns a deep copy.
func (lo *LoRA) Clone() *LoRA {
	c := &LoRA{Names: append([]string(nil), lo.Names...)}
	for _, p := range lo.Params {
		c.Params = append(c.Params, p.Clone())
	}
	return c
}

// NumParams is the length of the flattened adapter vector.
func (lo *LoRA) NumParams() int {
	n := 0
	for _, p := range lo.Params {
		n += len(p.Data)
	}
	return n
}
