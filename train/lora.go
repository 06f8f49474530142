package train

import (
	"fmt"

	"github.com/congrad-beam/congrad/gpu/model"
)

// LoRA holds trainable adapters: gpu/model's LoRAParams (PEFT names, A
// [r, in], B [out, r]) whose Values the trainer updates in place.
type LoRA struct {
	Params []model.LoRAParam
}

// NewLoRA returns fresh adapters from seed: A ~ N(0, 1/in), B = 0 (unless the
// engine's LoRA options say otherwise), so the adapted model starts equal to
// the base model and only the B factors get a gradient.
func (e *Engine) NewLoRA(seed uint64) (*LoRA, error) {
	o := e.Opts.LoRA
	o.Seed = seed
	ps, err := model.LoRAParams(e.M.Config, o)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	return &LoRA{Params: ps}, nil
}

// Names are the PEFT tensor names, in parameter order.
func (lo *LoRA) Names() []string {
	out := make([]string, len(lo.Params))
	for i, p := range lo.Params {
		out[i] = p.Name
	}
	return out
}

// Values are the adapter values in parameter order (shared, not copied).
func (lo *LoRA) Values() [][]float32 {
	out := make([][]float32, len(lo.Params))
	for i, p := range lo.Params {
		out[i] = p.Value
	}
	return out
}

// Clone returns a deep copy.
func (lo *LoRA) Clone() *LoRA {
	c := &LoRA{Params: make([]model.LoRAParam, len(lo.Params))}
	for i, p := range lo.Params {
		p.Dims = append([]int(nil), p.Dims...)
		p.Value = append([]float32(nil), p.Value...)
		c.Params[i] = p
	}
	return c
}

// NumParams is the length of the flattened adapter vector.
func (lo *LoRA) NumParams() int { return model.LoRASize(lo.Params) }

// Tensors returns the adapters as named host tensors for safetensors output.
func (lo *LoRA) Tensors() map[string]*model.Tensor {
	ts := make(map[string]*model.Tensor, len(lo.Params))
	for _, p := range lo.Params {
		ts[p.Name] = &model.Tensor{Dims: p.Dims, Data: p.Value}
	}
	return ts
}
