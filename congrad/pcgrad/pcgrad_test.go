package pcgrad

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func dot(a, b []float32) float64 {
	s := 0.0
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

func near(a, b []float32, tol float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(float64(a[i])-float64(b[i])) > tol {
			return false
		}
	}
	return true
}

func mustConsensus(t *testing.T, dirs map[string][]float32, seed uint64) Result {
	t.Helper()
	r, err := Consensus(dirs, seed)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNoConflictIsSum(t *testing.T) {
	dirs := map[string][]float32{"en": {1, 2, 0}, "de": {0, 1, 1}, "fr": {2, 0, 1}}
	r := mustConsensus(t, dirs, 1)
	if r.Projections != 0 {
		t.Fatalf("projections fired without conflicts: %d", r.Projections)
	}
	if want := []float32{3, 3, 2}; !near(r.Consensus, want, 0) {
		t.Fatalf("g* = %v, want Σ G_l = %v", r.Consensus, want)
	}
	if !slices.Equal(r.Langs, []string{"de", "en", "fr"}) {
		t.Fatalf("langs %v not sorted", r.Langs)
	}
}

// 2-D by hand: a=(1,0), b=(-1,1), <a,b> = -1.
// p_a = a - (-1/2)·b = (0.5, 0.5); p_b = b - (-1/1)·a = (0, 1); g* = (0.5, 1.5).
func TestHand2D(t *testing.T) {
	r := mustConsensus(t, map[string][]float32{"a": {1, 0}, "b": {-1, 1}}, 0)
	if !near(r.Projected[0], []float32{0.5, 0.5}, 1e-7) || !near(r.Projected[1], []float32{0, 1}, 1e-7) {
		t.Fatalf("p = %v", r.Projected)
	}
	if !near(r.Consensus, []float32{0.5, 1.5}, 1e-7) || r.Projections != 2 {
		t.Fatalf("g* = %v, projections %d", r.Consensus, r.Projections)
	}
	if c := r.Cosine[0][1]; math.Abs(c+1/math.Sqrt2) > 1e-12 || r.Cosine[0][0] != 1 || r.Cosine[1][0] != c {
		t.Fatalf("cosine matrix %v", r.Cosine)
	}
	if math.Abs(r.Norms[1]-math.Sqrt2) > 1e-12 {
		t.Fatalf("norms %v", r.Norms)
	}
}

// 3-D by hand, order-dependent: a=(1,0,0), b=(-1,1,0), c=(0,-1,1);
// <a,b> = -1, <a,c> = 0, <b,c> = -1, |b|² = |c|² = 2.
//
//	p_a, order (b,c): a+b/2 = (.5,.5,0); <.,c> = -.5 → +c/4 = (.5,.25,.25)  [2 projections]
//	p_a, order (c,b): <a,c> = 0 skip; a+b/2 = (.5,.5,0)                      [1]
//	p_b, order (a,c): b+a = (0,1,0); <.,c> = -1 → +c/2 = (0,.5,.5)           [2]
//	p_b, order (c,a): b+c/2 = (-1,.5,.5); <.,a> = -1 → +a = (0,.5,.5)        [2]
//	p_c, order (a,b): skip a; c+b/2 = (-.5,-.5,1)                           [1]
//	p_c, order (b,a): c+b/2 = (-.5,-.5,1); <.,a> = -.5 → +a/2 = (0,-.5,1)    [2]
func TestHand3D(t *testing.T) {
	dirs := map[string][]float32{"a": {1, 0, 0}, "b": {-1, 1, 0}, "c": {0, -1, 1}}
	type want struct {
		p     []float32
		projs int
	}
	table := map[string]want{
		"a:1,2": {[]float32{.5, .25, .25}, 2}, "a:2,1": {[]float32{.5, .5, 0}, 1},
		"b:0,2": {[]float32{0, .5, .5}, 2}, "b:2,0": {[]float32{0, .5, .5}, 2},
		"c:0,1": {[]float32{-.5, -.5, 1}, 1}, "c:1,0": {[]float32{0, -.5, 1}, 2},
	}
	seenOrders := map[string]bool{}
	for seed := uint64(0); seed < 40; seed++ {
		r := mustConsensus(t, dirs, seed)
		var sum [3]float32
		projs := 0
		for l, name := range r.Langs {
			key := fmt.Sprintf("%s:%d,%d", name, r.Orders[l][0], r.Orders[l][1])
			seenOrders[key] = true
			w, ok := table[key]
			if !ok {
				t.Fatalf("seed %d: order %s is not a permutation of the others", seed, key)
			}
			if !near(r.Projected[l], w.p, 1e-7) {
				t.Fatalf("seed %d %s: p = %v, want %v", seed, key, r.Projected[l], w.p)
			}
			projs += w.projs
			for i := range sum {
				sum[i] += w.p[i]
			}
		}
		if r.Projections != projs || !near(r.Consensus, sum[:], 1e-7) {
			t.Fatalf("seed %d: g* %v (%d projections), want %v (%d)", seed, r.Consensus, r.Projections, sum, projs)
		}
	}
	if len(seenOrders) != len(table) {
		t.Fatalf("40 seeds produced only orders %v", seenOrders)
	}
}

func TestOppositeDirectionsGiveOrthogonal(t *testing.T) {
	// Conflicting (negative cosine): each p is orthogonal to the other's G.
	a, b := []float32{3, 1, -2, 0.5}, []float32{-1, 2, 1, -1}
	r := mustConsensus(t, map[string][]float32{"a": a, "b": b}, 0)
	if d := dot(r.Projected[0], b); math.Abs(d) > 1e-5 {
		t.Fatalf("<p_a, G_b> = %v", d)
	}
	if d := dot(r.Projected[1], a); math.Abs(d) > 1e-5 {
		t.Fatalf("<p_b, G_a> = %v", d)
	}
	// Exactly opposite: both project to zero, g* = 0.
	r = mustConsensus(t, map[string][]float32{"a": {1, -2}, "b": {-2, 4}}, 0)
	if !near(r.Consensus, []float32{0, 0}, 1e-7) || math.Abs(dot(r.Projected[0], r.Projected[1])) > 1e-12 {
		t.Fatalf("opposite: g* %v p %v", r.Consensus, r.Projected)
	}
}

// TestLastProjectionNonNegative: for random conflicting directions, after
// surgery <p_l, G_j> >= -eps for the last language j of l's order (METHOD §7).
func TestLastProjectionNonNegative(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	for trial := 0; trial < 200; trial++ {
		L, d := 2+rng.IntN(8), 1+rng.IntN(40)
		dirs := map[string][]float32{}
		for l := 0; l < L; l++ {
			v := make([]float32, d)
			for i := range v {
				v[i] = float32(rng.NormFloat64())
			}
			dirs[fmt.Sprintf("l%d", l)] = v
		}
		r := mustConsensus(t, dirs, rng.Uint64())
		for l := range r.Langs {
			last := r.Orders[l][len(r.Orders[l])-1]
			G := dirs[r.Langs[last]]
			eps := 1e-5 * r.Norms[l] * r.Norms[last]
			if d := dot(r.Projected[l], G); d < -eps {
				t.Fatalf("trial %d: <p_%d, G_%d> = %v < -%v", trial, l, last, d, eps)
			}
		}
		// g* is the sum of the p_l.
		for i := 0; i < d; i++ {
			var s float64
			for l := range r.Langs {
				s += float64(r.Projected[l][i])
			}
			if math.Abs(s-float64(r.Consensus[i])) > 1e-5*(1+math.Abs(s)) {
				t.Fatalf("g*[%d]=%v, Σp=%v", i, r.Consensus[i], s)
			}
		}
	}
}

func TestSeededReproducible(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	dirs := map[string][]float32{}
	for l := 0; l < 10; l++ {
		v := make([]float32, 64)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		dirs[fmt.Sprintf("lang%02d", l)] = v
	}
	a := mustConsensus(t, dirs, 42)
	b := mustConsensus(t, dirs, 42)
	for i := range a.Consensus {
		if math.Float32bits(a.Consensus[i]) != math.Float32bits(b.Consensus[i]) {
			t.Fatal("same seed, different g*")
		}
	}
	if !slices.EqualFunc(a.Orders, b.Orders, slices.Equal) {
		t.Fatal("same seed, different orders")
	}
	c := mustConsensus(t, dirs, 43)
	if slices.EqualFunc(a.Orders, c.Orders, slices.Equal) {
		t.Fatal("seeds 42 and 43 gave identical orders for all 10 languages")
	}
	// Orders are permutations of the other indices.
	for l, o := range a.Orders {
		s := slices.Sorted(slices.Values(o))
		want := []int{}
		for j := 0; j < 10; j++ {
			if j != l {
				want = append(want, j)
			}
		}
		if !slices.Equal(s, want) {
			t.Fatalf("order %d = %v", l, o)
		}
	}
}

func TestOrderUniform(t *testing.T) {
	// For L=4, each language's 3! = 6 orders should be about equally likely.
	counts := map[string]int{}
	n := 6000
	for seed := 0; seed < n; seed++ {
		counts[fmt.Sprint(Order(uint64(seed), 0, 4))]++
	}
	if len(counts) != 6 {
		t.Fatalf("orders seen: %v", counts)
	}
	for o, c := range counts {
		if math.Abs(float64(c)-float64(n)/6) > 5*math.Sqrt(float64(n)/6) {
			t.Fatalf("order %s seen %d times of %d", o, c, n)
		}
	}
}

func TestZeroAndSingle(t *testing.T) {
	r := mustConsensus(t, map[string][]float32{"en": {1, -1}}, 9)
	if !near(r.Consensus, []float32{1, -1}, 0) || len(r.Orders[0]) != 0 || r.Projections != 0 {
		t.Fatalf("single language: %+v", r)
	}
	r = mustConsensus(t, map[string][]float32{"en": {1, 0}, "de": {0, 0}, "fr": {-1, 1}}, 9)
	if !slices.Equal(r.Zero, []string{"de"}) {
		t.Fatalf("zero = %v", r.Zero)
	}
	de := slices.Index(r.Langs, "de")
	if !near(r.Projected[de], []float32{0, 0}, 0) || r.Cosine[de][0] != 0 || r.Cosine[0][de] != 0 || r.Cosine[de][de] != 0 {
		t.Fatalf("zero direction: p=%v cos=%v", r.Projected[de], r.Cosine)
	}
	// en and fr conflict; de is skipped: same as the 2-language result.
	r2 := mustConsensus(t, map[string][]float32{"en": {1, 0}, "fr": {-1, 1}}, 9)
	if !near(r.Consensus, r2.Consensus, 1e-7) {
		t.Fatalf("zero language changed g*: %v vs %v", r.Consensus, r2.Consensus)
	}
	r = mustConsensus(t, map[string][]float32{"a": {0, 0}, "b": {0, 0}}, 0)
	if !near(r.Consensus, []float32{0, 0}, 0) || len(r.Zero) != 2 {
		t.Fatalf("all zero: %+v", r)
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name string
		dirs map[string][]float32
		want error
	}{
		{"none", nil, ErrNoLanguages},
		{"empty map", map[string][]float32{}, ErrNoLanguages},
		{"dim", map[string][]float32{"a": {1, 2}, "b": {1}}, ErrDim},
		{"zero length", map[string][]float32{"a": {}, "b": {}}, ErrDim},
		{"nan", map[string][]float32{"a": {1, float32(math.NaN())}, "b": {1, 2}}, ErrNonFinite},
		{"inf", map[string][]float32{"a": {1, 2}, "b": {float32(math.Inf(1)), 2}}, ErrNonFinite},
	}
	for _, c := range cases {
		if _, err := Consensus(c.dirs, 0); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func FuzzConsensusNoPanic(f *testing.F) {
	f.Add(uint8(3), uint8(4), uint64(1), []byte{1, 2, 3, 250, 0, 128})
	f.Fuzz(func(t *testing.T, nl, d uint8, seed uint64, raw []byte) {
		dirs := map[string][]float32{}
		pos := 0
		for l := 0; l < int(nl%12); l++ {
			v := make([]float32, int(d%16))
			for i := range v {
				if pos < len(raw) {
					v[i] = float32(int8(raw[pos])) / 16
					pos++
				}
			}
			dirs[fmt.Sprint(l)] = v
		}
		r, err := Consensus(dirs, seed)
		if err == nil && len(r.Consensus) != int(d%16) {
			t.Fatalf("consensus length %d", len(r.Consensus))
		}
	})
}
