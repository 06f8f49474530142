package dpo

import (
	"fmt"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/dtypes/bfloat16"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
)

// padLen rounds the longest sequence up to a power of two (min 16, max
// MaxLen), so a stream of batches compiles a handful of shapes, each once.
func (x *Extractor) padLen(longest int) int { return PadLen(longest, x.opts.MaxLen) }

func (x *Extractor) exec(mode graphMode) (*Exec, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if e, ok := x.execs[mode]; ok {
		return e, nil
	}
	e, err := NewExec(x.m.Backend, x.graphFn(mode))
	if err != nil {
		return nil, fmt.Errorf("dpo: build graph: %w", err)
	}
	e.SetMaxCache(64)
	x.execs[mode] = e
	return e, nil
}

// runBatch runs pairs idx (at most opts.Batch; a short batch is padded with
// empty rows whose mask is zero, so the compiled shape never changes).
func (x *Extractor) runBatch(mode graphMode, idx []int, encs []encoded) (rows []rowResult, err error) {
	b := x.opts.Batch
	longest := 1
	for _, i := range idx {
		e := encs[i]
		longest = max(longest, len(e.prompt)+len(e.chosen), len(e.prompt)+len(e.rejected))
	}
	t := x.padLen(longest)
	tokens, gidx, mask, lenDiff := pack(int32(x.m.Tok.PAD()), encs, idx, b, t)
	dt := x.opts.DType
	args := []any{
		tensors.FromFlatDataAndDimensions(tokens, 2*b, t),
		tensors.FromFlatDataAndDimensions(gidx, 2*b*t, 2),
		floatTensor(dt, mask, 2*b, t),
		floatTensor(dt, lenDiff, b),
	}
	if !mode.exact && !mode.gradOnly {
		for _, s := range x.sketch {
			args = append(args, s)
		}
	}
	for _, l := range x.lora {
		args = append(args, l)
	}
	ws, err := x.m.DeviceWeights(dt)
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		args = append(args, w)
	}
	e, err := x.exec(mode)
	if err != nil {
		return nil, err
	}
	outs, err := safeExec(e, args)
	if err != nil {
		return nil, fmt.Errorf("dpo: batch of %d pairs, padded length %d: %w", len(idx), t, err)
	}
	vec, loss, z, refW, refL, abs := toF64(flatten(outs[0])), toF64(flatten(outs[1])), toF64(flatten(outs[2])),
		toF64(flatten(outs[3])), toF64(flatten(outs[4])), toF64(flatten(outs[5]))
	width := len(vec) / b
	rows = make([]rowResult, len(idx))
	for k := range idx {
		rows[k] = rowResult{vec: vec[k*width : (k+1)*width], loss: loss[k], z: z[k], refW: refW[k], refL: refL[k], absSum: abs[k]}
	}
	return rows, nil
}

// safeExec turns a GoMLX panic (bad shapes, backend failure) into an error.
func safeExec(e *Exec, args []any) (outs []*tensors.Tensor, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("device call panicked: %v", r)
		}
	}()
	return e.Exec(args...)
}

func floatTensor(dt dtypes.DType, v []float64, dims ...int) *tensors.Tensor {
	switch dt {
	case dtypes.Float64:
		return tensors.FromFlatDataAndDimensions(append([]float64{}, v...), dims...)
	case dtypes.BFloat16:
		b := make([]bfloat16.BFloat16, len(v))
		for i, x := range v {
			b[i] = bfloat16.FromFloat32(float32(x))
		}
		return tensors.FromFlatDataAndDimensions(b, dims...)
	}
	f := make([]float32, len(v))
	for i, x := range v {
		f[i] = float32(x)
	}
	return tensors.FromFlatDataAndDimensions(f, dims...)
}

// flatten copies a float tensor to the host as float32 or float64 data.
func flatten(t *tensors.Tensor) any {
	defer t.FinalizeAll()
	switch t.DType() {
	case dtypes.Float64:
		return tensors.MustCopyFlatData[float64](t)
	case dtypes.BFloat16:
		b := tensors.MustCopyFlatData[bfloat16.BFloat16](t)
		f := make([]float32, len(b))
		for i, x := range b {
			f[i] = x.Float32()
		}
		return f
	}
	return tensors.MustCopyFlatData[float32](t)
}

func toF64(v any) []float64 {
	switch s := v.(type) {
	case []float64:
		return s
	case []float32:
		out := make([]float64, len(s))
		for i, x := range s {
			out[i] = float64(x)
		}
		return out
	}
	panic(fmt.Sprintf("toF64: %T", v))
}
