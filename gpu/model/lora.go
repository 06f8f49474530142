package model

import (
	"fmt"
	"math"
	"strings"
)

// LoRAOptions configure the low-rank adapters whose gradients ConGrad sketches.
// The zero value means rank 8, alpha 16, targets q_proj and v_proj, B = 0.
type LoRAOptions struct {
	Rank    int
	Alpha   float64
	Targets []string // module names: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj
	Seed    uint64
	// InitBStd draws B from N(0, InitBStd^2) instead of zeros. Fresh LoRA has
	// B = 0, where only B gets a gradient; tests set this so A's gradient and
	// the policy/reference difference are exercised too.
	InitBStd float64
}

// WithDefaults fills zero fields.
func (o LoRAOptions) WithDefaults() LoRAOptions {
	if o.Rank == 0 {
		o.Rank = 8
	}
	if o.Alpha == 0 {
		o.Alpha = 2 * float64(o.Rank)
	}
	if len(o.Targets) == 0 {
		o.Targets = []string{"q_proj", "v_proj"}
	}
	return o
}

// Scale is alpha / rank, the factor applied to B·A.
func (o LoRAOptions) Scale() float64 { return o.Alpha / float64(o.Rank) }

// LoRAParam is one adapter tensor: Name is PEFT's naming
// ("model.layers.0.self_attn.q_proj.lora_A.weight"), Base the adapted weight.
// A is [r, in], B is [out, r]; gradients and sketches flatten them row-major.
type LoRAParam struct {
	Name  string
	Base  string
	IsA   bool
	Dims  []int
	Value []float32
}

var loraModules = map[string]string{
	"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
	"gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp",
}

// LoRAParams lists the adapter tensors in a fixed order (layer, target, A then
// B) with their seeded initial values.
func LoRAParams(cfg *Config, o LoRAOptions) ([]LoRAParam, error) {
	o = o.WithDefaults()
	if o.Rank < 0 {
		return nil, fmt.Errorf("lora: rank %d must be positive", o.Rank)
	}
	shapes := map[string][]int{}
	for _, s := range cfg.WeightShapes() {
		shapes[s.Name] = s.Dims
	}
	var out []LoRAParam
	for l := 0; l < cfg.NumHiddenLayers; l++ {
		for _, t := range o.Targets {
			mod, ok := loraModules[t]
			if !ok {
				return nil, fmt.Errorf("lora: unknown target %q (want one of q_proj k_proj v_proj o_proj gate_proj up_proj down_proj)", t)
			}
			base := fmt.Sprintf("model.layers.%d.%s.%s.weight", l, mod, t)
			d := shapes[base]
			stem := strings.TrimSuffix(base, ".weight")
			a := LoRAParam{Name: stem + ".lora_A.weight", Base: base, IsA: true, Dims: []int{o.Rank, d[1]}}
			b := LoRAParam{Name: stem + ".lora_B.weight", Base: base, Dims: []int{d[0], o.Rank}}
			a.Value = gaussian(o.Seed, a.Name, o.Rank*d[1], 1/math.Sqrt(float64(d[1])))
			b.Value = gaussian(o.Seed, b.Name, d[0]*o.Rank, o.InitBStd)
			out = append(out, a, b)
		}
	}
	return out, nil
}

func gaussian(seed uint64, name string, n int, std float64) []float32 {
	v := make([]float32, n)
	if std == 0 {
		return v
	}
	r := NewRNG(seed, name)
	for i := range v {
		v[i] = float32(std * r.Normal())
	}
	return v
}

// LoRASize is the total number of adapter parameters (the gradient length d).
func LoRASize(ps []LoRAParam) int {
	n := 0
	for _, p := range ps {
		n += len(p.Value)
	}
	return n
}
