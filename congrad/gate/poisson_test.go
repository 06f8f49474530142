package gate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/congrad-beam/congrad/congrad/vec"
)

// Any split of the pairs over workers, merged in any order, gives the same
// state (up to float rounding of the sums).
func TestPoissonBootMergeOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	n := 300
	proj := make([]float64, n)
	for i := range proj {
		proj[i] = rng.NormFloat64()
	}
	whole := NewPoissonBoot(200, 9)
	for i, a := range proj {
		if err := whole.Add(fmt.Sprint("p", i), a); err != nil {
			t.Fatal(err)
		}
	}
	for trial := 0; trial < 5; trial++ {
		parts := make([]*PoissonBoot, 1+rng.IntN(5))
		for i := range parts {
			parts[i] = NewPoissonBoot(200, 9)
		}
		for _, i := range rng.Perm(n) {
			if err := parts[rng.IntN(len(parts))].Add(fmt.Sprint("p", i), proj[i]); err != nil {
				t.Fatal(err)
			}
		}
		acc := NewPoissonBoot(200, 9)
		for _, j := range rng.Perm(len(parts)) {
			if err := acc.Merge(parts[j]); err != nil {
				t.Fatal(err)
			}
		}
		if acc.N != whole.N || math.Abs(acc.Sum-whole.Sum) > 1e-9 {
			t.Fatalf("trial %d: n %d sum %v, want %d %v", trial, acc.N, acc.Sum, whole.N, whole.Sum)
		}
		for b := range acc.WSum {
			if math.Abs(acc.WSum[b]-whole.WSum[b]) > 1e-9 || acc.WCount[b] != whole.WCount[b] {
				t.Fatalf("trial %d replicate %d differs", trial, b)
			}
		}
	}
	if err := whole.Merge(NewPoissonBoot(10, 9)); err == nil {
		t.Error("merging different B: want an error")
	}
}

// The Poisson bootstrap and CosineCI's multinomial bootstrap estimate the
// same interval: on 2000 pairs their ends agree to a fraction of the width.
func TestPoissonBootMatchesCosineCI(t *testing.T) {
	vs := cluster(2000, axis(16, 0, 0.2), 1, 12)
	ref := axis(16, 0, 1)
	ci, err := CosineCI(vs, ref, BootOptions{B: 2000, Level: 0.95, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	pb := NewPoissonBoot(2000, 3)
	sum := make([]float32, 16)
	for i, v := range vs {
		if err := pb.Add(fmt.Sprint(i), vec.Dot(v, ref)/vec.Norm(ref)); err != nil {
			t.Fatal(err)
		}
		for j, x := range v {
			sum[j] += x / float32(len(vs))
		}
	}
	got, err := pb.CI(vec.Norm(sum), 0.95)
	if err != nil {
		t.Fatal(err)
	}
	w := ci.Hi - ci.Lo
	if math.Abs(got.Value-ci.Value) > 1e-5 || math.Abs(got.Lo-ci.Lo) > 0.15*w || math.Abs(got.Hi-ci.Hi) > 0.15*w {
		t.Errorf("Poisson %+v, multinomial %+v", got, ci)
	}
}

func TestPoisson1Moments(t *testing.T) {
	n := 200000
	var s, s2 float64
	for i := 0; i < n; i++ {
		k := float64(poisson1(splitmix(uint64(i) * 0x9E3779B97F4A7C15)))
		s += k
		s2 += k * k
	}
	mean := s / float64(n)
	variance := s2/float64(n) - mean*mean
	if math.Abs(mean-1) > 0.01 || math.Abs(variance-1) > 0.02 {
		t.Errorf("Poisson(1) draws: mean %v variance %v", mean, variance)
	}
}
