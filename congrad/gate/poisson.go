package gate

import (
	"fmt"
	"hash/fnv"
	"math"
	"slices"
)

// PoissonBoot is the mergeable form of CosineCI's bootstrap, for a
// distributed pipeline where one language's pairs are spread over workers:
// instead of resampling n pairs with replacement, every pair gets B
// independent Poisson(1) weights derived from (seed, pair ID, replicate),
// so its weights do not depend on which worker sees it or in what order.
// The state is 2B+2 numbers per language; Merge adds states. This is the
// online ("Poisson") bootstrap of Oza & Russell (2001), used for large
// data by Chamandy et al. (Google, 2012). Feed it the projections
// a_i = <v_i, R>/||R|| of one language's pairs on the reference R.
type PoissonBoot struct {
	Seed   uint64
	Sum    float64   // Σ a_i
	N      int       // pairs added
	WSum   []float64 // per replicate: Σ w_ib a_i
	WCount []float64 // per replicate: Σ w_ib
}

// NewPoissonBoot returns an empty accumulator with B replicates.
func NewPoissonBoot(B int, seed uint64) *PoissonBoot {
	return &PoissonBoot{Seed: seed, WSum: make([]float64, B), WCount: make([]float64, B)}
}

// Add records one pair's projection. Errors: a non-finite projection.
func (p *PoissonBoot) Add(pairID string, proj float64) error {
	if !finite(proj) {
		return fmt.Errorf("%w: projection of %q is %v", ErrOptions, pairID, proj)
	}
	h := fnv.New64a()
	h.Write([]byte(pairID))
	key := h.Sum64() ^ p.Seed
	for b := range p.WSum {
		w := float64(poisson1(splitmix(key + uint64(b+1)*0x9E3779B97F4A7C15)))
		p.WSum[b] += w * proj
		p.WCount[b] += w
	}
	p.Sum += proj
	p.N++
	return nil
}

// Merge adds o into p. Errors: different B or seed.
func (p *PoissonBoot) Merge(o *PoissonBoot) error {
	if len(o.WSum) != len(p.WSum) || o.Seed != p.Seed {
		return fmt.Errorf("%w: merging B=%d seed %d into B=%d seed %d", ErrOptions, len(o.WSum), o.Seed, len(p.WSum), p.Seed)
	}
	for b := range p.WSum {
		p.WSum[b] += o.WSum[b]
		p.WCount[b] += o.WCount[b]
	}
	p.Sum += o.Sum
	p.N += o.N
	return nil
}

// CI is the interval of the cosine, given ||G_l|| (the norm of the
// language's mean vector), as in CosineCI: replicate projection means
// Σ w a / Σ w, percentiles at the level, divided by the norm. Replicates
// whose weights are all zero (possible for tiny languages) are skipped.
func (p *PoissonBoot) CI(meanNorm, level float64) (CI, error) {
	if p.N == 0 || !(meanNorm > 0) || !(level > 0 && level < 1) {
		return CI{}, fmt.Errorf("%w: %d pairs, norm %v, level %v", ErrOptions, p.N, meanNorm, level)
	}
	var reps []float64
	for b := range p.WSum {
		if p.WCount[b] > 0 {
			reps = append(reps, p.WSum[b]/p.WCount[b]/meanNorm)
		}
	}
	if len(reps) == 0 {
		return CI{}, fmt.Errorf("%w: every replicate has zero weight", ErrOptions)
	}
	slices.Sort(reps)
	alpha := (1 - level) / 2
	clamp := func(x float64) float64 { return max(-1, min(1, x)) }
	return CI{Value: clamp(p.Sum / float64(p.N) / meanNorm), Lo: clamp(quantile(reps, alpha)), Hi: clamp(quantile(reps, 1-alpha)), N: p.N}, nil
}

// splitmix is the SplitMix64 finaliser.
func splitmix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xBF58476D1CE4E5B9
	x ^= x >> 27
	x *= 0x94D049BB133111EB
	return x ^ (x >> 31)
}

// poisson1 draws Poisson(1) by inverting its CDF at the uniform u = x/2^64.
func poisson1(x uint64) int {
	u := float64(x>>11) / (1 << 53)
	p := math.Exp(-1)
	cdf := p
	k := 0
	for u >= cdf && k < 20 {
		k++
		p /= float64(k)
		cdf += p
	}
	return k
}
