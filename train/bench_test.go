package train

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchPairs are task-shaped pairs: 6-byte prompt and responses (16 tokens padded).
func benchPairs(n int) []Pair {
	rng := rand.New(rand.NewPCG(1, 1))
	s := func() string {
		b := make([]byte, 6)
		for i := range b {
			b[i] = byte(33 + rng.IntN(90))
		}
		return string(b)
	}
	out := make([]Pair, n)
	for i := range out {
		out[i] = Pair{ID: fmt.Sprint(i), Prompt: s(), Chosen: s(), Rejected: s()}
	}
	return out
}

func benchEngine(b *testing.B) (*Engine, *Dataset) {
	base, err := NewBase(TinyConfig(), 1)
	if err != nil {
		b.Fatal(err)
	}
	e, err := NewEngine(base, 0.1, 0)
	if err != nil {
		b.Fatal(err)
	}
	ds, err := e.NewDataset(benchPairs(256))
	if err != nil {
		b.Fatal(err)
	}
	return e, ds
}

// BenchmarkTrainStep: one Adam step on 32 pairs of the tiny model (forward,
// backward, host update). Reports pairs/s.
func BenchmarkTrainStep(b *testing.B) {
	e, ds := benchEngine(b)
	opts := Options{LR: 1e-3, BatchSize: 32, Steps: 1, Seed: 1}
	if _, err := e.Train(context.Background(), ds, opts); err != nil { // compile
		b.Fatal(err)
	}
	opts.Steps = 20
	b.ResetTimer()
	for range b.N {
		if _, err := e.Train(context.Background(), ds, opts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*opts.Steps*opts.BatchSize)/b.Elapsed().Seconds(), "pairs/s")
}

// BenchmarkPerPairGradients: exact per-pair gradients, chunks of 64 pairs.
func BenchmarkPerPairGradients(b *testing.B) {
	e, ds := benchEngine(b)
	if _, err := e.PerPairGradients(context.Background(), ds.Subset([]int{0, 1}), nil, 64); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := e.PerPairGradients(context.Background(), ds, nil, 64); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*ds.Len())/b.Elapsed().Seconds(), "pairs/s")
}
