package sketch

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestJLBound: the inner-product error of sketches, over many random pairs,
// has the std the JL analysis predicts: for both constructions
// Var(<Sa,Sb>) ≈ (||a||²||b||² + <a,b>²)/k for dense a, b. Each pair's error
// is standardised by that and the standardised errors must have std in
// [0.8, 1.2] and mean near 0: a broken hash (correlated buckets or signs) or
// a wrong Gaussian scale fails.
func TestJLBound(t *testing.T) {
	cases := []struct {
		spec  Spec
		d     int
		pairs int
	}{
		{Spec{CountSketch, 256, 5, Version}, 2048, 400},
		{Spec{CountSketch, 1024, 6, Version}, 4096, 400},
		{Spec{CountSketch, 8192, 7, Version}, 16384, 300},
		{Spec{Gaussian, 64, 8, Version}, 128, 300},
		{Spec{Gaussian, 256, 9, Version}, 256, 200},
	}
	r := rand.New(rand.NewPCG(9, 9))
	for _, c := range cases {
		t.Run(c.spec.String(), func(t *testing.T) {
			sk := mustNew(t, c.spec)
			zs := make([]float64, c.pairs)
			for p := range zs {
				a, b := make([]float32, c.d), make([]float32, c.d)
				rho := r.Float64()*2 - 1
				for i := range a {
					x, y := r.NormFloat64(), r.NormFloat64()
					a[i] = float32(x)
					b[i] = float32(rho*x + math.Sqrt(1-rho*rho)*y)
				}
				// Each pair uses different columns (a different parameter
				// name), so pairs are independent draws of S.
				param := fmt.Sprintf("pair%d", p)
				sk.Reset()
				_ = sk.Add(param, 0, a)
				sa := sk.Sketch()
				sk.Reset()
				_ = sk.Add(param, 0, b)
				sb := sk.Sketch()
				ab, aa, bb := dot(a, b), dot(a, a), dot(b, b)
				sd := math.Sqrt((aa*bb + ab*ab) / float64(c.spec.K))
				zs[p] = (dot(sa, sb) - ab) / sd
			}
			var m, v float64
			for _, z := range zs {
				m += z
			}
			m /= float64(len(zs))
			for _, z := range zs {
				v += (z - m) * (z - m)
			}
			std := math.Sqrt(v / float64(len(zs)-1))
			t.Logf("k=%d: standardised error std %.3f mean %.3f over %d pairs", c.spec.K, std, m, len(zs))
			if std < 0.8 || std > 1.2 {
				t.Errorf("error std %.3f × sqrt((|a|²|b|²+<a,b>²)/k), want within [0.8, 1.2]", std)
			}
			if math.Abs(m) > 4/math.Sqrt(float64(len(zs))) {
				t.Errorf("error mean %.3f: biased", m)
			}
		})
	}
}

func dot(a, b []float32) float64 {
	s := 0.0
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

// FuzzAdd: arbitrary bytes as gradient values, offsets and parameter names
// never panic; an error is returned exactly when a value is non-finite.
func FuzzAdd(f *testing.F) {
	f.Add([]byte{0, 0, 128, 63, 0, 0, 192, 127}, "w", 3, uint8(5), false)
	f.Add([]byte{1, 2, 3, 4}, "", -1, uint8(0), true)
	f.Fuzz(func(t *testing.T, raw []byte, param string, offset int, k uint8, gauss bool) {
		s := Spec{Method: CountSketch, K: 1 + int(k), Seed: 1, Version: Version}
		if gauss {
			s.Method = Gaussian
		}
		sk := mustNew(t, s)
		vals := make([]float32, len(raw)/4)
		nonFinite := false
		for i := range vals {
			u := uint32(raw[4*i]) | uint32(raw[4*i+1])<<8 | uint32(raw[4*i+2])<<16 | uint32(raw[4*i+3])<<24
			vals[i] = math.Float32frombits(u)
			if math.IsNaN(float64(vals[i])) || math.IsInf(float64(vals[i]), 0) {
				nonFinite = true
			}
		}
		err := sk.Add(param, offset, vals)
		switch {
		case offset < 0:
			if !errors.Is(err, ErrBadBlock) {
				t.Fatalf("offset %d: %v", offset, err)
			}
		case nonFinite:
			if !errors.Is(err, ErrNonFinite) {
				t.Fatalf("non-finite input: %v", err)
			}
		case offset > math.MaxInt-len(vals):
		case err != nil:
			t.Fatalf("finite input: %v", err)
		}
		_ = sk.Sketch()
	})
}
