package accum

import (
	"fmt"
	"math"
)

// EMA is the mergeable exponential moving average of METHOD.md §4:
//
//	G = Σ_τ (1−γ)·γ^(T−τ)·ḡ_τ,   T = the largest step seen (TMax)
//
// The state is S = G at T = TMax. A batch at step τ <= TMax adds
// (1−γ)γ^(TMax−τ)ḡ_τ; a batch at τ > TMax first rescales S by γ^(τ−TMax).
// Merge rescales the side with the smaller TMax by γ^ΔT and adds. Several
// batches with the same step simply add (each is one mini-batch mean).
//
// EMA is float64 and deterministic only up to rounding: different merge
// orders give results that agree to ~1e-15 relative, not bit for bit. Its
// float32 Result usually rounds to the same bits but is not guaranteed to.
type EMA struct {
	K     int
	Gamma float64
	TMax  int64
	N     int64     // batches added
	S     []float64 // the weighted sum at TMax, length K
}

// NewEMA returns an empty EMA (γ must be in (0, 1); checked at first use).
func NewEMA(k int, gamma float64) *EMA {
	e := &EMA{K: k, Gamma: gamma}
	if k >= 1 {
		e.S = make([]float64, k)
	}
	return e
}

func (e *EMA) check() error {
	if e.K < 1 {
		return fmt.Errorf("%w: ema k=%d", ErrBadParam, e.K)
	}
	if !(e.Gamma > 0 && e.Gamma < 1) {
		return fmt.Errorf("%w: ema gamma=%v not in (0,1)", ErrBadParam, e.Gamma)
	}
	if len(e.S) != e.K {
		return fmt.Errorf("%w: ema state has length %d, want k=%d", ErrDim, len(e.S), e.K)
	}
	return nil
}

// AddBatch adds one mini-batch mean ḡ at step τ. Errors: ErrDim,
// ErrNonFinite, ErrBadParam (negative step); the accumulator is unchanged.
func (e *EMA) AddBatch(step int64, batchMean []float32) error {
	if err := e.check(); err != nil {
		return err
	}
	if step < 0 {
		return fmt.Errorf("%w: negative step %d", ErrBadParam, step)
	}
	if len(batchMean) != e.K {
		return fmt.Errorf("%w: batch mean length %d, ema k=%d", ErrDim, len(batchMean), e.K)
	}
	if err := checkFinite(batchMean); err != nil {
		return err
	}
	if e.N == 0 {
		e.TMax = step
	} else if step > e.TMax {
		e.scale(math.Pow(e.Gamma, float64(step-e.TMax)))
		e.TMax = step
	}
	w := (1 - e.Gamma) * math.Pow(e.Gamma, float64(e.TMax-step))
	for i, x := range batchMean {
		e.S[i] += float64(w * float64(x)) // float64(): no FMA fusion, same bits on every platform
	}
	e.N++
	return nil
}

func (e *EMA) scale(f float64) {
	for i := range e.S {
		e.S[i] *= f
	}
}

// Merge adds o into e (o is not modified). Errors: ErrDim, ErrBadParam
// (different γ).
func (e *EMA) Merge(o *EMA) error {
	if err := e.check(); err != nil {
		return err
	}
	if err := o.check(); err != nil {
		return fmt.Errorf("merge: %w", err)
	}
	if o.K != e.K {
		return fmt.Errorf("%w: merge k=%d into k=%d", ErrDim, o.K, e.K)
	}
	if o.Gamma != e.Gamma {
		return fmt.Errorf("%w: merge gamma=%v into gamma=%v", ErrBadParam, o.Gamma, e.Gamma)
	}
	switch {
	case o.N == 0:
		return nil
	case e.N == 0:
		e.TMax = o.TMax
		copy(e.S, o.S)
	case o.TMax > e.TMax:
		e.scale(math.Pow(e.Gamma, float64(o.TMax-e.TMax)))
		e.TMax = o.TMax
		for i, x := range o.S {
			e.S[i] += x
		}
	default:
		f := math.Pow(e.Gamma, float64(e.TMax-o.TMax))
		for i, x := range o.S {
			e.S[i] += float64(f * x)
		}
	}
	e.N += o.N
	return nil
}

// Result returns G rounded to float32. Errors: ErrEmpty, ErrNonFinite
// (float32 overflow).
func (e *EMA) Result() ([]float32, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	if e.N == 0 {
		return nil, ErrEmpty
	}
	out := make([]float32, e.K)
	for i, x := range e.S {
		out[i] = float32(x)
	}
	if err := checkFinite(out); err != nil {
		return nil, fmt.Errorf("ema result: %w", err)
	}
	return out, nil
}
