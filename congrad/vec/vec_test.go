package vec

import (
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

func exactDot(a, b []float32) float64 {
	s := new(big.Float).SetPrec(2000)
	for i := range a {
		p := new(big.Float).SetPrec(2000).SetFloat64(float64(a[i]))
		p.Mul(p, new(big.Float).SetFloat64(float64(b[i])))
		s.Add(s, p)
	}
	f, _ := s.Float64()
	return f
}

func TestDotAccuracy(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, n := range []int{0, 1, 3, 4, 5, 17, 8192} {
		a, b := make([]float32, n), make([]float32, n)
		absSum := 0.0
		for i := range a {
			a[i], b[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
			absSum += math.Abs(float64(a[i]) * float64(b[i]))
		}
		want := exactDot(a, b)
		if got := Dot(a, b); math.Abs(got-want) > 1e-13*absSum+1e-300 {
			t.Errorf("n=%d: Dot=%v exact=%v", n, got, want)
		}
		if n > 0 {
			if got := Norm(a); math.Abs(got-math.Sqrt(exactDot(a, a))) > 1e-12*got {
				t.Errorf("n=%d: Norm=%v", n, got)
			}
		}
	}
}

func TestCosine(t *testing.T) {
	cases := []struct {
		a, b []float32
		want float64
		err  error
	}{
		{[]float32{1, 0}, []float32{0, 1}, 0, nil},
		{[]float32{1, 1}, []float32{2, 2}, 1, nil},
		{[]float32{1, 2, 3}, []float32{-1, -2, -3}, -1, nil},
		{[]float32{3, 4}, []float32{4, 3}, 24.0 / 25, nil},
		{[]float32{1, 2}, []float32{1}, 0, ErrDim},
		{[]float32{0, 0}, []float32{1, 2}, 0, ErrZero},
		{[]float32{1, 2}, []float32{0, 0}, 0, ErrZero},
		{[]float32{}, []float32{}, 0, ErrZero},
		{[]float32{float32(math.NaN()), 1}, []float32{1, 1}, 0, ErrNonFinite},
		{[]float32{1, 1}, []float32{float32(math.Inf(-1)), 1}, 0, ErrNonFinite},
		{[]float32{math.MaxFloat32, math.MaxFloat32}, []float32{math.MaxFloat32, 0}, 1 / math.Sqrt2, nil},
		{[]float32{1e-45, 0}, []float32{1e-45, 0}, 1, nil},
	}
	for i, c := range cases {
		got, err := Cosine(c.a, c.b)
		if !errors.Is(err, c.err) {
			t.Errorf("case %d: err %v, want %v", i, err, c.err)
			continue
		}
		if err == nil && math.Abs(got-c.want) > 1e-12 {
			t.Errorf("case %d: cos=%v want %v", i, got, c.want)
		}
	}
}

func TestTargetMatchesCosine(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	g := make([]float32, 257)
	for i := range g {
		g[i] = float32(r.NormFloat64())
	}
	tg, err := NewTarget(g)
	if err != nil {
		t.Fatal(err)
	}
	for trial := 0; trial < 50; trial++ {
		s := make([]float32, len(g))
		for i := range s {
			s[i] = float32(r.NormFloat64())
		}
		a, _ := Cosine(s, g)
		b, err := tg.Cosine(s)
		if err != nil || math.Abs(a-b) > 1e-14 {
			t.Fatalf("target %v vs cosine %v (%v)", b, a, err)
		}
	}
	if _, err := tg.Cosine(g[:3]); !errors.Is(err, ErrDim) {
		t.Fatal(err)
	}
	if _, err := tg.Cosine(make([]float32, len(g))); !errors.Is(err, ErrZero) {
		t.Fatal(err)
	}
	if _, err := NewTarget([]float32{0, 0}); !errors.Is(err, ErrZero) {
		t.Fatal(err)
	}
	if _, err := NewTarget([]float32{float32(math.NaN())}); !errors.Is(err, ErrNonFinite) {
		t.Fatal(err)
	}
}

func TestCheckFinite(t *testing.T) {
	if err := CheckFinite([]float32{0, -0, 1e-45, math.MaxFloat32}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		if err := CheckFinite([]float32{1, v}); !errors.Is(err, ErrNonFinite) {
			t.Fatalf("%v: %v", v, err)
		}
	}
}

// TestFiniteNonzero: one pass agrees with CheckFinite and Norm != 0,
// including the smallest subnormal (its square is still nonzero in float64)
// and negative zero.
func TestFiniteNonzero(t *testing.T) {
	negZero := float32(math.Copysign(0, -1))
	for _, a := range [][]float32{
		{}, {0}, {negZero, 0, negZero}, {0, 0, 0, 0, 0, 1e-45}, {math.MaxFloat32, 0},
		{1, 2, 3, 4, 5, 6, 7, 8, 9}, {0, 0, 0, 0, float32(math.NaN())}, {float32(math.Inf(-1)), 0},
		{0, 0, 0, 0, 0, 0, 0, 0, float32(math.Inf(1))},
	} {
		finite, nonzero := FiniteNonzero(a)
		if want := CheckFinite(a) == nil; finite != want {
			t.Errorf("%v: finite=%v, CheckFinite says %v", a, finite, want)
		}
		if finite {
			if want := Norm(a) != 0; nonzero != want {
				t.Errorf("%v: nonzero=%v, Norm != 0 is %v", a, nonzero, want)
			}
		}
	}
}

func TestTargetCosineNorm(t *testing.T) {
	tg, _ := NewTarget([]float32{3, 4})
	c, err := tg.CosineNorm([]float32{4, 3}, 5)
	if err != nil || math.Abs(c-24.0/25) > 1e-15 {
		t.Fatalf("%v %v", c, err)
	}
	for _, s := range [][]float32{{float32(math.NaN()), 1}, {float32(math.Inf(1)), 0}, {0, float32(math.Inf(-1))}} {
		if _, err := tg.CosineNorm(s, 1); !errors.Is(err, ErrNonFinite) {
			t.Fatalf("%v: %v", s, err)
		}
		if _, err := tg.Cosine(s); !errors.Is(err, ErrNonFinite) {
			t.Fatalf("%v: %v", s, err)
		}
	}
	if _, err := tg.CosineNorm([]float32{1, 1}, math.NaN()); !errors.Is(err, ErrNonFinite) {
		t.Fatal(err)
	}
	if _, err := tg.CosineNorm([]float32{0, 0}, 0); !errors.Is(err, ErrZero) {
		t.Fatal(err)
	}
	if _, err := tg.CosineNorm([]float32{1}, 1); !errors.Is(err, ErrDim) {
		t.Fatal(err)
	}
}

func FuzzCosineNoPanic(f *testing.F) {
	f.Add([]byte{0, 0, 128, 63, 0, 0, 192, 127}, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, ra, rb []byte) {
		conv := func(raw []byte) []float32 {
			v := make([]float32, len(raw)/4)
			for i := range v {
				v[i] = math.Float32frombits(uint32(raw[4*i]) | uint32(raw[4*i+1])<<8 | uint32(raw[4*i+2])<<16 | uint32(raw[4*i+3])<<24)
			}
			return v
		}
		a, b := conv(ra), conv(rb)
		c, err := Cosine(a, b)
		if err == nil && (math.IsNaN(c) || c < -1 || c > 1) {
			t.Fatalf("cosine %v out of [-1,1] without error", c)
		}
		if err == nil && (CheckFinite(a) != nil || CheckFinite(b) != nil) {
			t.Fatal("non-finite input accepted")
		}
		if tg, err := NewTarget(b); err == nil {
			if c, err := tg.Cosine(a); err == nil && (math.IsNaN(c) || c < -1 || c > 1) {
				t.Fatalf("target cosine %v", c)
			}
		}
	})
}
