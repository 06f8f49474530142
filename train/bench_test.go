package train

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/congrad-beam/congrad/gpu/model"
)

// benchPairs are task-shaped pairs: 6-byte prompt and responses (14 tokens, 16 padded).
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

// benchModel is the experiment's shape (2 layers, width 32, 2 heads, MLP 64,
// byte vocabulary, LoRA r=8 on q and v): what the trainer's numbers in
// docs/perf/train.md describe.
func benchModel(b *testing.B) *model.Model {
	cfg, err := model.NewConfig(model.Config{ModelType: "llama", VocabSize: 259, HiddenSize: 32, IntermediateSize: 64,
		NumHiddenLayers: 2, NumAttentionHeads: 2, MaxPositionEmbeddings: 32,
		BOSTokenID: model.IDList{model.ByteBOS}, EOSTokenID: model.IDList{model.ByteEOS}, PadTokenID: model.IDList{model.BytePAD}})
	if err != nil {
		b.Fatal(err)
	}
	return &model.Model{Ref: "bench", Config: cfg, Tok: model.ByteTokenizer{}, Weights: model.InitWeights(cfg, 1)}
}

func benchEngine(b *testing.B) (*Engine, *Dataset) {
	e, err := NewEngine(benchModel(b), EngineOptions{})
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
