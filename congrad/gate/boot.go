package gate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/congrad-beam/congrad/congrad/vec"
)

// BootOptions parametrise the bootstrap confidence interval of a
// language-level cosine.
type BootOptions struct {
	B     int     // bootstrap replicates (default 1000)
	Level float64 // two-sided confidence level (default 0.95)
	Seed  uint64  // replicate draws are seeded: a rerun gives the same interval
}

// DefaultBootOptions: 1000 replicates, 95%, seed 1.
func DefaultBootOptions() BootOptions { return BootOptions{B: 1000, Level: 0.95, Seed: 1} }

func (o BootOptions) validate() error {
	if o.B < 10 || !(o.Level > 0 && o.Level < 1) {
		return fmt.Errorf("%w: bootstrap options %+v (want B >= 10, Level in (0,1))", ErrOptions, o)
	}
	return nil
}

// CI is a statistic and its two-sided bootstrap interval.
type CI struct {
	Value, Lo, Hi float64
	N             int // vectors (pairs) behind Value
}

// CosineCI returns cos(G, ref) for G = mean(vs), with a percentile
// bootstrap interval over resamples of vs (ref held fixed: the interval
// covers the sampling noise of these pairs, not that of ref).
//
// What is resampled is the projection <G, ref>/||ref|| = mean_i a_i,
// a_i = <v_i, ref>/||ref||; the interval's ends are divided by the sample
// ||G||. The sign of the cosine is the sign of the projection, so "the
// interval lies below 0" is exactly a bootstrap sign test of the cosine.
// Resampling ||G|| as well would bias every replicate's cosine towards 0
// (duplicated pairs add pair-specific noise to the resampled mean, which
// inflates its norm), so that interval can miss the estimate altogether.
// Cost: one dot product per vector, then O(n) per replicate.
// Errors: ErrOptions, vec.ErrDim, vec.ErrZero (ref or G is zero),
// vec.ErrNonFinite.
func CosineCI(vs [][]float32, ref []float32, o BootOptions) (CI, error) {
	if err := o.validate(); err != nil {
		return CI{}, err
	}
	if len(vs) == 0 {
		return CI{}, fmt.Errorf("%w: no vectors", ErrOptions)
	}
	if _, err := vec.NewTarget(ref); err != nil { // checks finite and non-zero
		return CI{}, fmt.Errorf("reference: %w", err)
	}
	n := len(vs)
	rn := vec.Norm(ref)
	a := make([]float64, n)
	sum := make([]float64, len(ref))
	for i, v := range vs {
		if len(v) != len(ref) {
			return CI{}, fmt.Errorf("%w: vector %d has length %d, reference %d", vec.ErrDim, i, len(v), len(ref))
		}
		if err := vec.CheckFinite(v); err != nil {
			return CI{}, fmt.Errorf("vector %d: %w", i, err)
		}
		a[i] = vec.Dot(v, ref) / rn
		for j, x := range v {
			sum[j] += float64(x)
		}
	}
	gn := 0.0
	for _, x := range sum {
		gn += x * x
	}
	gn = math.Sqrt(gn) / float64(n) // ||G||
	if gn == 0 {
		return CI{}, fmt.Errorf("%w: the mean of the vectors is zero", vec.ErrZero)
	}
	mean := func(w func(int) float64) float64 {
		s := 0.0
		for i := 0; i < n; i++ {
			s += w(i)
		}
		return s / float64(n)
	}
	value := mean(func(i int) float64 { return a[i] }) / gn
	rng := rand.New(rand.NewPCG(o.Seed, 0x626f6f74)) // "boot"
	reps := make([]float64, o.B)
	for b := range reps {
		reps[b] = mean(func(int) float64 { return a[rng.IntN(n)] }) / gn
	}
	slices.Sort(reps)
	alpha := (1 - o.Level) / 2
	clamp := func(x float64) float64 { return max(-1, min(1, x)) }
	return CI{Value: clamp(value), Lo: clamp(quantile(reps, alpha)), Hi: clamp(quantile(reps, 1-alpha)), N: n}, nil
}

// quantile of sorted xs at p in [0,1], linear interpolation between order
// statistics (type 7).
func quantile(xs []float64, p float64) float64 {
	if len(xs) == 1 {
		return xs[0]
	}
	h := p * float64(len(xs)-1)
	lo := int(math.Floor(h))
	if lo >= len(xs)-1 {
		return xs[len(xs)-1]
	}
	return xs[lo] + (h-float64(lo))*(xs[lo+1]-xs[lo])
}
