package sketch

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/quick"
)

func mustNew(t testing.TB, s Spec) *Sketcher {
	t.Helper()
	sk, err := New(s)
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

// block is one Add call.
type block struct {
	param  string
	offset int
	vals   []float32
}

func sketchOf(t testing.TB, s Spec, blocks []block) []float32 {
	t.Helper()
	sk := mustNew(t, s)
	for _, b := range blocks {
		if err := sk.Add(b.param, b.offset, b.vals); err != nil {
			t.Fatal(err)
		}
	}
	return sk.Sketch()
}

// randGrad is a named-parameter gradient with values spread over many
// exponents (like real gradients) so the exact accumulation is exercised.
func randGrad(r *rand.Rand, sizes map[string]int) map[string][]float32 {
	g := map[string][]float32{}
	for p, n := range sizes {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(8)-6)))
		}
		g[p] = v
	}
	return g
}

// randomSplit cuts each parameter into random blocks and shuffles all blocks.
func randomSplit(r *rand.Rand, g map[string][]float32) []block {
	var out []block
	names := make([]string, 0, len(g))
	for p := range g {
		names = append(names, p)
	}
	slices.Sort(names)
	for _, p := range names {
		v := g[p]
		for off := 0; off < len(v); {
			n := 1 + r.IntN(len(v)-off)
			out = append(out, block{p, off, v[off : off+n]})
			off += n
		}
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func wholeBlocks(g map[string][]float32) []block {
	var out []block
	for p, v := range g {
		out = append(out, block{p, 0, v})
	}
	slices.SortFunc(out, func(a, b block) int {
		if a.param < b.param {
			return -1
		}
		return 1
	})
	return out
}

func bitsEqual(a, b []float32) (int, bool) {
	if len(a) != len(b) {
		return -1, false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i, false
		}
	}
	return 0, true
}

func specs() []Spec {
	cs := DefaultSpec()
	cs.K, cs.Seed = 512, 11
	ga := Spec{Method: Gaussian, K: 64, Seed: 11, Version: Version}
	return []Spec{cs, ga}
}

func TestSplitInvarianceBitIdentical(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, s := range specs() {
		g := randGrad(r, map[string]int{"a.w": 700, "b.w": 333, "c": 1, "emb": 1500})
		want := sketchOf(t, s, wholeBlocks(g))
		for trial := 0; trial < 20; trial++ {
			got := sketchOf(t, s, randomSplit(r, g))
			if i, ok := bitsEqual(got, want); !ok {
				t.Fatalf("%s trial %d: split/shuffled sketch differs at %d: %v vs %v", s, trial, i, got[i], want[i])
			}
		}
	}
}

// TestSplitInvarianceQuick: property test over random sizes, seeds and splits.
func TestSplitInvarianceQuick(t *testing.T) {
	f := func(seed uint64, n1, n2 uint16, k uint8) bool {
		r := rand.New(rand.NewPCG(seed, 7))
		s := Spec{Method: CountSketch, K: 1 + int(k), Seed: seed, Version: Version}
		g := randGrad(r, map[string]int{"x": 1 + int(n1)%3000, "y": 1 + int(n2)%3000})
		a := sketchOf(t, s, wholeBlocks(g))
		b := sketchOf(t, s, randomSplit(r, g))
		_, ok := bitsEqual(a, b)
		return ok
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 60}); err != nil {
		t.Fatal(err)
	}
}

func TestLinearityExactOnIntegers(t *testing.T) {
	// Small integers sum exactly in float32, so S(a+b) = Sa + Sb bit for bit.
	r := rand.New(rand.NewPCG(2, 2))
	for _, s := range specs() {
		if s.Method == Gaussian {
			continue // gaussian entries are not integers; see the rounding test
		}
		a, b, ab := make([]float32, 4000), make([]float32, 4000), make([]float32, 4000)
		for i := range a {
			a[i], b[i] = float32(r.IntN(201)-100), float32(r.IntN(201)-100)
			ab[i] = a[i] + b[i]
		}
		sa := sketchOf(t, s, []block{{"p", 0, a}})
		sb := sketchOf(t, s, []block{{"p", 0, b}})
		sab := sketchOf(t, s, []block{{"p", 0, ab}})
		for i := range sab {
			if sab[i] != sa[i]+sb[i] {
				t.Fatalf("%s: S(a+b)[%d]=%v, Sa+Sb=%v", s, i, sab[i], sa[i]+sb[i])
			}
		}
	}
}

func TestLinearityToRounding(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	for _, s := range specs() {
		n := 3000
		a, b, ab := make([]float32, n), make([]float32, n), make([]float32, n)
		for i := range a {
			a[i], b[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
			ab[i] = a[i] + b[i]
		}
		sa := sketchOf(t, s, []block{{"p", 0, a}})
		sb := sketchOf(t, s, []block{{"p", 0, b}})
		sab := sketchOf(t, s, []block{{"p", 0, ab}})
		// Each a[i]+b[i] rounds by <= 2^-24 relative; bound the propagated
		// error by the sketch of |a|+|b| (scaled by the largest |S| entry).
		absSum := 0.0
		for i := range a {
			absSum += math.Abs(float64(a[i])) + math.Abs(float64(b[i]))
		}
		smax := 1.0
		if s.Method == Gaussian {
			smax = 6 / math.Sqrt(float64(s.K))
		}
		tol := absSum*smax*0x1p-24 + 1e-6
		for i := range sab {
			if d := math.Abs(float64(sab[i]) - float64(sa[i]+sb[i])); d > tol {
				t.Fatalf("%s: |S(a+b)-(Sa+Sb)|[%d] = %g > %g", s, i, d, tol)
			}
		}
		// Scaling by a power of two is exact.
		a2 := make([]float32, n)
		for i := range a {
			a2[i] = 4 * a[i]
		}
		sa2 := sketchOf(t, s, []block{{"p", 0, a2}})
		for i := range sa2 {
			if sa2[i] != 4*sa[i] {
				t.Fatalf("%s: S(4a)[%d]=%v, 4·Sa=%v", s, i, sa2[i], 4*sa[i])
			}
		}
	}
}

func TestSketchMatchesDefinition(t *testing.T) {
	// The Sketcher must equal the contract's Bucket/GaussianColumn definition
	// (computed here independently, in float64; the values are small integers
	// scaled so float64 is exact for countsketch).
	r := rand.New(rand.NewPCG(4, 4))
	for _, s := range specs() {
		g := make([]float32, 500)
		for i := range g {
			g[i] = float32(r.IntN(64) - 32)
		}
		want := make([]float64, s.K)
		col := make([]float32, s.K)
		for j, v := range g {
			if s.Method == CountSketch {
				b, sg := s.Bucket("w", 100+j)
				want[b] += float64(sg) * float64(v)
			} else {
				s.GaussianColumn("w", 100+j, col)
				for rr := range col {
					want[rr] += float64(col[rr]) * float64(v)
				}
			}
		}
		got := sketchOf(t, s, []block{{"w", 100, g}})
		for i := range got {
			if math.Abs(float64(got[i])-want[i]) > 1e-6*(1+math.Abs(want[i])) {
				t.Fatalf("%s: sketch[%d]=%v, definition gives %v", s, i, got[i], want[i])
			}
		}
	}
}

func TestBadInput(t *testing.T) {
	for _, s := range specs() {
		sk := mustNew(t, s)
		if err := sk.Add("w", 0, []float32{1, 2, 3}); err != nil {
			t.Fatal(err)
		}
		before := sk.Sketch()
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
			err := sk.Add("w", 3, []float32{5, bad, 7})
			if !errors.Is(err, ErrNonFinite) {
				t.Fatalf("%s: Add(%v) error = %v, want ErrNonFinite", s, bad, err)
			}
		}
		if err := sk.Add("w", -1, []float32{1}); !errors.Is(err, ErrBadBlock) {
			t.Fatalf("negative offset: %v", err)
		}
		if err := sk.Add("w", math.MaxInt, []float32{1, 2}); !errors.Is(err, ErrBadBlock) {
			t.Fatalf("overflowing offset: %v", err)
		}
		if i, ok := bitsEqual(sk.Sketch(), before); !ok {
			t.Fatalf("%s: failed Adds changed the sketch at %d", s, i)
		}
		if err := sk.Add("w", 0, nil); err != nil {
			t.Fatalf("empty block: %v", err)
		}
	}
}

func TestResetAndOverflowToInf(t *testing.T) {
	s := DefaultSpec()
	s.K = 1
	sk := mustNew(t, s)
	big := []float32{math.MaxFloat32, math.MaxFloat32, math.MaxFloat32}
	// With K=1 every column lands in bucket 0; signs decide the sum.
	_ = sk.Add("w", 0, big)
	var want float64
	for j := range big {
		_, sg := s.Bucket("w", j)
		want += float64(sg) * math.MaxFloat32
	}
	got := sk.Sketch()[0]
	if math.Abs(want) > math.MaxFloat32 && !math.IsInf(float64(got), 0) {
		t.Fatalf("overflowing bucket gave %v, want ±Inf (exact %g)", got, want)
	}
	if math.Abs(want) <= math.MaxFloat32 && float64(got) != want {
		t.Fatalf("got %v want %v", got, want)
	}
	sk.Reset()
	if v := sk.Sketch()[0]; v != 0 {
		t.Fatalf("after Reset: %v", v)
	}
}

func TestSpecValidateParse(t *testing.T) {
	good := []Spec{DefaultSpec(), {Gaussian, 1, math.MaxUint64, Version}, {CountSketch, MaxK, 42, Version}}
	for _, s := range good {
		if err := s.Validate(); err != nil {
			t.Errorf("%v: %v", s, err)
		}
		p, err := ParseSpec(s.String())
		if err != nil || p != s {
			t.Errorf("ParseSpec(%q) = %v, %v", s.String(), p, err)
		}
	}
	if DefaultSpec().String() != "countsketch:k=8192:seed=0:v1" {
		t.Errorf("default spec string %q", DefaultSpec().String())
	}
	bad := []Spec{{"", 8, 0, Version}, {"kronecker", 8, 0, Version}, {CountSketch, 0, 0, Version},
		{CountSketch, MaxK + 1, 0, Version}, {CountSketch, 8, 0, 0}, {CountSketch, 8, 0, Version + 1}}
	for _, s := range bad {
		if err := s.Validate(); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%+v: Validate = %v", s, err)
		}
		if _, err := New(s); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%+v: New = %v", s, err)
		}
	}
	for _, text := range []string{"", "countsketch", "countsketch:k=8:seed=0", "countsketch:k=08:seed=0:v1",
		"countsketch:k=8:seed=-1:v1", "countsketch:k=x:seed=0:v1", "gauss:k=8:seed=0:v1", "countsketch:k=8:seed=0:v2",
		"countsketch:seed=0:k=8:v1", " countsketch:k=8:seed=0:v1"} {
		if _, err := ParseSpec(text); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("ParseSpec(%q) = %v, want ErrInvalidSpec", text, err)
		}
	}
	a, b := DefaultSpec(), DefaultSpec()
	b.Seed = 1
	if err := a.Check(b); !errors.Is(err, ErrSpecMismatch) {
		t.Errorf("Check = %v", err)
	}
	if err := a.Check(DefaultSpec()); err != nil {
		t.Errorf("Check same = %v", err)
	}
}

func TestBucketAndGaussianDistribution(t *testing.T) {
	s := Spec{Method: CountSketch, K: 16, Seed: 3, Version: Version}
	counts := make([]int, s.K)
	pos := 0
	n := 160000
	for j := 0; j < n; j++ {
		b, sg := s.Bucket("layer", j)
		counts[b]++
		if sg > 0 {
			pos++
		}
	}
	chi := 0.0
	exp := float64(n) / float64(s.K)
	for _, c := range counts {
		chi += (float64(c) - exp) * (float64(c) - exp) / exp
	}
	if chi > 50 { // 15 dof: p < 1e-5
		t.Errorf("bucket chi-square %v too large: %v", chi, counts)
	}
	if d := math.Abs(float64(pos)/float64(n) - 0.5); d > 0.01 {
		t.Errorf("sign balance off by %v", d)
	}
	g := Spec{Method: Gaussian, K: 100, Seed: 3, Version: Version}
	col := make([]float32, g.K)
	var m1, m2, m4 float64
	cnt := 0
	for j := 0; j < 1000; j++ {
		g.GaussianColumn("layer", j, col)
		for _, v := range col {
			x := float64(v) * math.Sqrt(float64(g.K)) // standardise to N(0,1)
			m1 += x
			m2 += x * x
			m4 += x * x * x * x
			cnt++
		}
	}
	m1, m2, m4 = m1/float64(cnt), m2/float64(cnt), m4/float64(cnt)
	if math.Abs(m1) > 0.02 || math.Abs(m2-1) > 0.03 || math.Abs(m4-3) > 0.15 {
		t.Errorf("gaussian moments mean=%v var=%v m4=%v, want 0, 1, 3", m1, m2, m4)
	}
	// Different parameters and seeds give different columns.
	a, b := make([]float32, 8), make([]float32, 8)
	g.GaussianColumn("p", 0, a)
	g.GaussianColumn("q", 0, b)
	if _, same := bitsEqual(a, b); same {
		t.Error("columns of different params are equal")
	}
}

// TestFlushPathBitIdentical lowers the flush threshold so band sums move into
// the long accumulators many times, at points that depend on the split, and
// checks the result against the unflushed sketch; Sketch mid-stream must not
// change the final result either.
func TestFlushPathBitIdentical(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 12))
	s := Spec{Method: CountSketch, K: 97, Seed: 5, Version: Version}
	g := randGrad(r, map[string]int{"a": 5000, "b": 3000})
	want := sketchOf(t, s, wholeBlocks(g)) // 8000 < 2^21: no flush
	old := bandFlush
	defer func() { bandFlush = old }()
	for _, bf := range []int{1, 7, 100, 4096} {
		bandFlush = bf
		for trial := 0; trial < 5; trial++ {
			sk := mustNew(t, s)
			for i, b := range randomSplit(r, g) {
				if err := sk.Add(b.param, b.offset, b.vals); err != nil {
					t.Fatal(err)
				}
				if i%3 == 0 {
					_ = sk.Sketch() // mid-stream read must not disturb the state
				}
			}
			if i, ok := bitsEqual(sk.Sketch(), want); !ok {
				t.Fatalf("bandFlush=%d trial %d: differs at %d", bf, trial, i)
			}
		}
	}
}

// TestCodeCacheBitIdentical: cached codes (with budgets that cache all,
// some, or none of the columns) give the same sketches as hashing, for
// power-of-two and other K, across several gradients and random splits.
func TestCodeCacheBitIdentical(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 13))
	sizes := map[string]int{"a": 3000, "b": 1200, "c": 7}
	for _, k := range []int{1, 500, 1024} {
		s := Spec{Method: CountSketch, K: k, Seed: 21, Version: Version}
		for _, budget := range []int{1 << 20, 2500, 10} {
			cached := mustNew(t, s)
			cached.CacheCodes(budget)
			for gi := 0; gi < 4; gi++ {
				g := randGrad(r, sizes)
				want := sketchOf(t, s, wholeBlocks(g))
				cached.Reset()
				for _, b := range randomSplit(r, g) {
					if err := cached.Add(b.param, b.offset, b.vals); err != nil {
						t.Fatal(err)
					}
				}
				if i, ok := bitsEqual(cached.Sketch(), want); !ok {
					t.Fatalf("k=%d budget=%d gradient %d: differs at %d", k, budget, gi, i)
				}
			}
			if cached.codeUsed > budget {
				t.Fatalf("cache used %d columns, budget %d", cached.codeUsed, budget)
			}
		}
	}
}

func TestNonPow2MatchesDefinition(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 14))
	for _, k := range []int{3, 500, 8191} {
		s := Spec{Method: CountSketch, K: k, Seed: 2, Version: Version}
		g := make([]float32, 2000)
		want := make([]float64, k)
		for j := range g {
			g[j] = float32(r.IntN(64) - 32)
			b, sg := s.Bucket("w", 7+j)
			want[b] += float64(sg) * float64(g[j])
		}
		got := sketchOf(t, s, []block{{"w", 7, g}})
		for i := range got {
			if float64(got[i]) != want[i] {
				t.Fatalf("k=%d: sketch[%d]=%v, definition %v", k, i, got[i], want[i])
			}
		}
	}
}
