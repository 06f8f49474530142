package gate

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/congrad-beam/congrad/congrad/vec"
)

// cluster draws n vectors center + noise·N(0, I) in dimension k.
func cluster(n int, center []float32, noise float64, seed uint64) [][]float32 {
	rng := rand.New(rand.NewPCG(seed, 9))
	out := make([][]float32, n)
	for i := range out {
		v := make([]float32, len(center))
		for j := range v {
			v[j] = center[j] + float32(noise*rng.NormFloat64())
		}
		out[i] = v
	}
	return out
}

func axis(k, j int, s float32) []float32 {
	v := make([]float32, k)
	v[j] = s
	return v
}

func meanCos(t *testing.T, vs [][]float32, ref []float32) float64 {
	t.Helper()
	sum := make([]float32, len(ref))
	for _, v := range vs {
		for j, x := range v {
			sum[j] += x
		}
	}
	c, err := vec.Cosine(sum, ref)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCosineCI(t *testing.T) {
	k := 32
	for _, c := range []struct {
		name      string
		center    float32
		noise     float64
		wantSign  int     // +1: CI above 0, −1: below 0, 0: CI straddles 0
		wantWidth float64 // the interval is narrower than this
	}{
		{"agreeing", 1, 0.5, +1, 0.2},
		{"opposed", -1, 0.5, -1, 0.2},
		{"no signal", 0, 1, 0, 2},
		{"weakly opposed, noisy", -0.1, 1, -1, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			vs := cluster(2000, axis(k, 0, c.center), c.noise, 4)
			ref := axis(k, 0, 2)
			o := DefaultBootOptions()
			ci, err := CosineCI(vs, ref, o)
			if err != nil {
				t.Fatal(err)
			}
			if want := meanCos(t, vs, ref); math.Abs(ci.Value-want) > 1e-6 {
				t.Errorf("value %v, want cos(mean, ref) = %v", ci.Value, want)
			}
			if !(ci.Lo <= ci.Value && ci.Value <= ci.Hi) || ci.Hi-ci.Lo > c.wantWidth || ci.N != 2000 {
				t.Errorf("interval %+v (width limit %v)", ci, c.wantWidth)
			}
			switch {
			case c.wantSign > 0 && !(ci.Lo > 0), c.wantSign < 0 && !(ci.Hi < 0), c.wantSign == 0 && !(ci.Lo < 0 && ci.Hi > 0):
				t.Errorf("interval %+v, want sign %d", ci, c.wantSign)
			}
			again, err := CosineCI(vs, ref, o)
			if err != nil || again != ci {
				t.Errorf("rerun with the same seed differs: %+v vs %+v (%v)", again, ci, err)
			}
		})
	}
}

func TestCosineCIErrors(t *testing.T) {
	vs := cluster(5, axis(4, 0, 1), 0.1, 1)
	if _, err := CosineCI(vs, make([]float32, 4), DefaultBootOptions()); !errors.Is(err, vec.ErrZero) {
		t.Errorf("zero reference: %v", err)
	}
	if _, err := CosineCI(vs, axis(3, 0, 1), DefaultBootOptions()); !errors.Is(err, vec.ErrDim) {
		t.Errorf("dimension mismatch: %v", err)
	}
	if _, err := CosineCI(nil, axis(4, 0, 1), DefaultBootOptions()); !errors.Is(err, ErrOptions) {
		t.Errorf("no vectors: %v", err)
	}
	if _, err := CosineCI(vs, axis(4, 0, 1), BootOptions{B: 5, Level: 0.95}); !errors.Is(err, ErrOptions) {
		t.Errorf("B=5: %v", err)
	}
	if _, err := CosineCI([][]float32{make([]float32, 4), make([]float32, 4)}, axis(4, 0, 1), DefaultBootOptions()); !errors.Is(err, vec.ErrZero) {
		t.Errorf("zero vectors: %v", err)
	}
}

func TestQuantile(t *testing.T) {
	xs := []float64{1, 2, 3, 4, 5}
	for _, c := range []struct{ p, want float64 }{{0, 1}, {1, 5}, {0.5, 3}, {0.25, 2}, {0.1, 1.4}} {
		if got := quantile(xs, c.p); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("quantile(%v) = %v, want %v", c.p, got, c.want)
		}
	}
}
