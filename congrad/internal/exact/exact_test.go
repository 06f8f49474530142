package exact

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// randF32 draws float32 values over the whole finite range, including
// subnormals, zeros and both signs, so every limb position is exercised.
func randF32(r *rand.Rand) float32 {
	for {
		var v float32
		switch r.IntN(4) {
		case 0:
			v = math.Float32frombits(r.Uint32())
		case 1:
			v = float32(r.NormFloat64())
		case 2:
			v = math.Float32frombits(r.Uint32() & 0x807fffff) // subnormal or zero
		default:
			v = float32(r.NormFloat64() * math.Pow(2, float64(r.IntN(60)-30)))
		}
		if !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) {
			return v
		}
	}
}

// ratOfF32 is the exact rational value of a float32 (reference).
func ratOfF32(v float32) *big.Rat { return new(big.Rat).SetFloat64(float64(v)) }

func ratOfLimbs(l []int64, f Format) *big.Rat {
	r := new(big.Rat).SetInt(BigInt(l))
	scale := new(big.Rat).SetInt(new(big.Int).Lsh(big.NewInt(1), uint(-f.Min)))
	return r.Quo(r, scale)
}

// TestAddF32sMatchesAddF32: the vector form leaves the same limbs as AddF32
// per coordinate, over the whole finite range (and the largest values and
// both zeros explicitly).
func TestAddF32sMatchesAddF32(t *testing.T) {
	if F32.Limbs != f32Limbs {
		t.Fatalf("F32.Limbs = %d, AddF32s assumes %d", F32.Limbs, f32Limbs)
	}
	r := rand.New(rand.NewPCG(7, 8))
	const k = 37
	got := make([]int64, k*F32.Limbs)
	want := make([]int64, k*F32.Limbs)
	special := []float32{math.MaxFloat32, -math.MaxFloat32, float32(math.Copysign(0, -1)), 0,
		math.Float32frombits(1), -math.Float32frombits(1), math.SmallestNonzeroFloat32}
	for trial := 0; trial < 200; trial++ {
		v := make([]float32, k)
		for c := range v {
			v[c] = randF32(r)
			if r.IntN(5) == 0 {
				v[c] = special[r.IntN(len(special))]
			}
		}
		AddF32s(got, v)
		for c, x := range v {
			AddF32(want[c*F32.Limbs:(c+1)*F32.Limbs], x)
		}
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("limb %d (coordinate %d): %d, want %d", i, i/F32.Limbs, got[i], want[i])
		}
	}
}

// TestAddF32sStagedExact: staging in float64 with TwoSum errors into the
// limbs, settled at random points, holds exactly the value AddF32s holds:
// over the whole finite range (subnormals, MaxFloat32 sums that float64
// rounds, both zeros) and for vectors of one scale, where the errors are
// rare and the float64 path carries almost everything.
func TestAddF32sStagedExact(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	const k = 29
	for _, scaled := range []bool{false, true} {
		got := make([]int64, k*F32.Limbs)
		want := make([]int64, k*F32.Limbs)
		s := make([]float64, k)
		for trial := 0; trial < 3000; trial++ {
			v := make([]float32, k)
			for c := range v {
				if scaled {
					v[c] = float32(r.NormFloat64() * 1e-3)
				} else {
					v[c] = randF32(r)
				}
				if r.IntN(50) == 0 {
					v[c] = []float32{math.MaxFloat32, -math.MaxFloat32, math.Float32frombits(1), 0}[r.IntN(4)]
				}
			}
			AddF32sStaged(got, s, v)
			AddF32s(want, v)
			if r.IntN(700) == 0 {
				SettleF64(got, s)
			}
		}
		SettleF64(got, s)
		for c := range s {
			if s[c] != 0 {
				t.Fatalf("settle left s[%d] = %g", c, s[c])
			}
			g := BigInt(got[c*F32.Limbs : (c+1)*F32.Limbs])
			w := BigInt(want[c*F32.Limbs : (c+1)*F32.Limbs])
			if g.Cmp(w) != 0 {
				t.Fatalf("scaled=%v coordinate %d: staged sum %v, want %v", scaled, c, g, w)
			}
		}
	}
}

func TestAddF32MatchesBigRat(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 300; trial++ {
		l := make([]int64, F32.Limbs)
		want := new(big.Rat)
		n := 1 + r.IntN(50)
		for i := 0; i < n; i++ {
			v := randF32(r)
			AddF32(l, v)
			want.Add(want, ratOfF32(v))
		}
		if got := ratOfLimbs(l, F32); got.Cmp(want) != 0 {
			t.Fatalf("trial %d: limbs hold %v, want %v", trial, got, want)
		}
		// Correct rounding: big.Rat.Float32 is the reference.
		w, _ := want.Float32()
		if got := Float32(l, F32); math.Float32bits(got) != math.Float32bits(w) && !(got == 0 && w == 0) {
			t.Fatalf("trial %d: Float32 = %v (%#x), want %v (%#x)", trial, got, math.Float32bits(got), w, math.Float32bits(w))
		}
	}
}

func TestAddF64ProductsMatchBigRat(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for trial := 0; trial < 300; trial++ {
		l := make([]int64, F32Prod.Limbs)
		want := new(big.Rat)
		for i := 0; i < 1+r.IntN(40); i++ {
			p := float64(randF32(r)) * float64(randF32(r)) // exact in float64
			AddF64(l, F32Prod, p)
			want.Add(want, new(big.Rat).SetFloat64(p))
		}
		if got := ratOfLimbs(l, F32Prod); got.Cmp(want) != 0 {
			t.Fatalf("trial %d: limbs hold %v, want %v", trial, got.FloatString(20), want.FloatString(20))
		}
		w, _ := want.Float32()
		if got := Float32(l, F32Prod); math.Float32bits(got) != math.Float32bits(w) && !(got == 0 && w == 0) {
			t.Fatalf("trial %d: Float32 = %g, want %g", trial, got, w)
		}
	}
}

func TestFloat32RoundingEdges(t *testing.T) {
	one := float32(1)
	ulp := math.Nextafter32(1, 2) - 1
	cases := []struct {
		name string
		in   []float32
	}{
		{"tie to even down", []float32{one, ulp / 2}},
		{"tie to even up", []float32{math.Nextafter32(1, 2), ulp / 2}},
		{"just above tie", []float32{one, ulp / 2, ulp / 1024}},
		{"cancellation", []float32{1e30, 1, -1e30}},
		{"overflow", []float32{math.MaxFloat32, math.MaxFloat32}},
		{"neg overflow", []float32{-math.MaxFloat32, -math.MaxFloat32}},
		{"subnormal sum", []float32{math.SmallestNonzeroFloat32, math.SmallestNonzeroFloat32}},
		{"subnormal to normal", []float32{0x1p-127, 0x1p-127}},
		{"zero", []float32{5, -5}},
	}
	for _, c := range cases {
		l := make([]int64, F32.Limbs)
		want := new(big.Rat)
		for _, v := range c.in {
			AddF32(l, v)
			want.Add(want, ratOfF32(v))
		}
		w, _ := want.Float32()
		if got := Float32(l, F32); math.Float32bits(got) != math.Float32bits(w) && !(got == 0 && w == 0) {
			t.Errorf("%s: got %g, want %g", c.name, got, w)
		}
	}
}

func TestOrderAndNormalizeInvariance(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	vals := make([]float32, 2000)
	for i := range vals {
		vals[i] = randF32(r)
	}
	a := make([]int64, F32.Limbs)
	for _, v := range vals {
		AddF32(a, v)
	}
	// Reverse order, split in two halves, normalise one, then merge.
	b1, b2 := make([]int64, F32.Limbs), make([]int64, F32.Limbs)
	for i := len(vals) - 1; i >= 0; i-- {
		if i%2 == 0 {
			AddF32(b1, vals[i])
		} else {
			AddF32(b2, vals[i])
		}
	}
	Normalize(b1)
	AddTo(b1, b2)
	if ratOfLimbs(a, F32).Cmp(ratOfLimbs(b1, F32)) != 0 {
		t.Fatal("different order/grouping gave a different exact sum")
	}
	Normalize(a)
	Normalize(b1)
	for i := range a {
		if a[i] != b1[i] {
			t.Fatalf("normalised limbs differ at %d: %d vs %d", i, a[i], b1[i])
		}
	}
}

func TestQuotient32(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for trial := 0; trial < 200; trial++ {
		l := make([]int64, F32.Limbs)
		want := new(big.Rat)
		n := int64(1 + r.IntN(20))
		for i := int64(0); i < n; i++ {
			v := randF32(r)
			AddF32(l, v)
			want.Add(want, ratOfF32(v))
		}
		want.Quo(want, new(big.Rat).SetInt64(n))
		w, _ := want.Float32()
		if got := Quotient32(l, F32, n); math.Float32bits(got) != math.Float32bits(w) {
			t.Fatalf("trial %d: got %g want %g", trial, got, w)
		}
	}
}

// BenchmarkAddF32sK2048 adds one k = 2048 vector of one scale per
// iteration, directly (AddF32s) and through float64 staging settled every
// 1024 vectors (AddF32sStaged, as accum.Staged does).
func BenchmarkAddF32sK2048(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	v := make([]float32, 2048)
	for i := range v {
		v[i] = float32(r.NormFloat64() * 1e-3)
	}
	b.Run("limbs", func(b *testing.B) {
		l := make([]int64, len(v)*F32.Limbs)
		b.SetBytes(int64(4 * len(v)))
		for b.Loop() {
			AddF32s(l, v)
		}
	})
	b.Run("staged", func(b *testing.B) {
		l := make([]int64, len(v)*F32.Limbs)
		s := make([]float64, len(v))
		b.SetBytes(int64(4 * len(v)))
		n := 0
		for b.Loop() {
			AddF32sStaged(l, s, v)
			if n++; n%1024 == 0 {
				SettleF64(l, s)
			}
		}
	})
}
