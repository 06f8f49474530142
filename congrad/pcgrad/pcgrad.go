// Package pcgrad merges per-language directions into one consensus direction
// by cross-lingual gradient surgery (PCGrad, METHOD.md §5):
//
//	for each language l:  p_l = G_l
//	    for j in a seeded permutation of the other languages:
//	        if <p_l, G_j> < 0:  p_l -= (<p_l, G_j> / ||G_j||²) G_j
//	g* = Σ_l p_l
//
// Projections are against the ORIGINAL G_j; a zero G_j is skipped. Inner
// products are float64 (through the Gram matrix of the G_l); p_l and g* are
// formed in float64 and rounded to float32 once.
package pcgrad

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/congrad-beam/congrad/congrad/vec"
)

var (
	// ErrNoLanguages: the input map is empty.
	ErrNoLanguages = errors.New("pcgrad: no languages")
	// ErrDim: directions of different lengths (or length 0).
	ErrDim = errors.New("pcgrad: dimension mismatch")
	// ErrNonFinite: a direction holds NaN or ±Inf.
	ErrNonFinite = errors.New("pcgrad: non-finite value")
)

// Result is the consensus and everything needed to audit it.
type Result struct {
	Langs       []string    // sorted
	Consensus   []float32   // g* = Σ_l p_l
	Projected   [][]float32 // p_l in Langs order
	Orders      [][]int     // for each l, the permutation of the other languages' indices used
	Cosine      [][]float64 // L×L cosines of the original G_l (conflict map); 0 where a direction is zero
	Norms       []float64   // ||G_l||
	Projections int         // how many projections fired
	Zero        []string    // languages whose direction was zero: skipped as targets, contribute nothing
}

// Consensus runs PCGrad over dirs (language -> G_l). The permutation for
// language index l (in sorted order) comes from Order(seed, l, L), so a rerun
// with the same seed gives the same g*. One language: g* = G_l (nothing to
// project against). A zero direction contributes p_l = 0 and is never a
// projection target. All directions zero: g* = 0 (no error; the filter
// decides what a zero consensus means). Errors: ErrNoLanguages, ErrDim,
// ErrNonFinite.
func Consensus(dirs map[string][]float32, seed uint64) (Result, error) {
	if len(dirs) == 0 {
		return Result{}, ErrNoLanguages
	}
	langs := make([]string, 0, len(dirs))
	for l := range dirs {
		langs = append(langs, l)
	}
	slices.Sort(langs)
	L := len(langs)
	d := len(dirs[langs[0]])
	if d == 0 {
		return Result{}, fmt.Errorf("%w: language %q has an empty direction", ErrDim, langs[0])
	}
	G := make([][]float32, L)
	for i, l := range langs {
		g := dirs[l]
		if len(g) != d {
			return Result{}, fmt.Errorf("%w: language %q has length %d, %q has %d", ErrDim, l, len(g), langs[0], d)
		}
		if err := vec.CheckFinite(g); err != nil {
			return Result{}, fmt.Errorf("%w: language %q: %v", ErrNonFinite, l, err)
		}
		G[i] = g
	}

	res := Result{
		Langs:     langs,
		Projected: make([][]float32, L),
		Orders:    make([][]int, L),
		Cosine:    make([][]float64, L),
		Norms:     make([]float64, L),
	}
	// Gram matrix of the originals: gives norms, cosines, and the first
	// projection coefficient of each p_l for free.
	gram := make([]float64, L*L)
	for i := 0; i < L; i++ {
		for j := i; j < L; j++ {
			v := vec.Dot(G[i], G[j])
			gram[i*L+j], gram[j*L+i] = v, v
		}
	}
	for i := 0; i < L; i++ {
		res.Norms[i] = math.Sqrt(gram[i*L+i])
		if res.Norms[i] == 0 {
			res.Zero = append(res.Zero, langs[i])
		}
	}
	for i := 0; i < L; i++ {
		res.Cosine[i] = make([]float64, L)
		for j := 0; j < L; j++ {
			if res.Norms[i] > 0 && res.Norms[j] > 0 {
				c := gram[i*L+j] / (res.Norms[i] * res.Norms[j])
				res.Cosine[i][j] = max(-1, min(1, c))
			}
		}
	}

	// Surgery in coefficient space: p_l = Σ_m c[m]·G_m, so
	// <p_l, G_j> = Σ_m c[m]·gram[m][j] costs O(L) instead of O(d), and a
	// projection only changes c[j]. p_l is materialised once at the end,
	// with one pass over d per non-zero coefficient.
	c := make([]float64, L)
	sum := make([]float64, d)
	for i := 0; i < L; i++ {
		res.Orders[i] = Order(seed, i, L)
		clear(c)
		if res.Norms[i] > 0 {
			c[i] = 1
			for _, j := range res.Orders[i] {
				if res.Norms[j] == 0 {
					continue
				}
				dot := 0.0
				for m, cm := range c {
					dot += float64(cm * gram[m*L+j])
				}
				if dot < 0 {
					c[j] -= dot / gram[j*L+j]
					res.Projections++
				}
			}
		}
		pl := make([]float32, d)
		combine(c, G, pl, sum)
		res.Projected[i] = pl
	}
	res.Consensus = make([]float32, d)
	for k, x := range sum {
		res.Consensus[k] = float32(x)
	}
	return res, nil
}

// combine writes p = Σ_m c[m]·G_m (float64, rounded once into pl) and adds
// it to sum, in one pass over the coordinates. The explicit float64()
// around each product forbids fusing it into an FMA (Go may fuse on arm64,
// not on amd64), so every platform rounds the same way.
func combine(c []float64, G [][]float32, pl []float32, sum []float64) {
	var coef []float64
	var vecs [][]float32
	for m, cm := range c {
		if cm != 0 {
			coef = append(coef, cm)
			vecs = append(vecs, G[m][:len(pl)])
		}
	}
	switch len(coef) {
	case 0:
		return // p = 0
	case 1:
		a, x := coef[0], vecs[0]
		for k := range pl {
			v := a * float64(x[k])
			pl[k] = float32(v)
			sum[k] += v
		}
	case 2:
		a, x, b, y := coef[0], vecs[0], coef[1], vecs[1]
		for k := range pl {
			v := float64(a*float64(x[k])) + float64(b*float64(y[k]))
			pl[k] = float32(v)
			sum[k] += v
		}
	default:
		for k := range pl {
			v := 0.0
			for m, a := range coef {
				v += float64(a * float64(vecs[m][k]))
			}
			pl[k] = float32(v)
			sum[k] += v
		}
	}
}

// Order returns the seeded permutation of {0..L-1} \ {l} used for language
// index l: a Fisher–Yates shuffle driven by SplitMix64 outputs of the state
// seed ⊕ (l+1)·0xD1B54A32D192ED03, each index drawn as floor(x·(i+1)/2^64).
func Order(seed uint64, l, L int) []int {
	out := make([]int, 0, max(L-1, 0))
	for j := 0; j < L; j++ {
		if j != l {
			out = append(out, j)
		}
	}
	state := seed ^ uint64(l+1)*0xD1B54A32D192ED03
	for i := len(out) - 1; i > 0; i-- {
		state += 0x9E3779B97F4A7C15
		x := mix(state)
		hi, _ := mul64(x, uint64(i+1))
		out[i], out[hi] = out[hi], out[i]
	}
	return out
}
