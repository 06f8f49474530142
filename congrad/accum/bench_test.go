package accum

import (
	"math/rand/v2"
	"testing"
)

func BenchmarkMeanAddK8192(b *testing.B) { benchAddK8192(b, NewMean(8192).Add) }

// BenchmarkStagedAddK8192 is BenchmarkMeanAddK8192 through Staged.
func BenchmarkStagedAddK8192(b *testing.B) { benchAddK8192(b, NewStaged(8192).Add) }

func benchAddK8192(b *testing.B, add func([]float32) error) {
	r := rand.New(rand.NewPCG(1, 1))
	v := randVec(r, 8192)
	b.SetBytes(4 * 8192)
	for b.Loop() {
		_ = add(v)
	}
}

func BenchmarkMeanMergeK8192(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	m, o := NewMean(8192), NewMean(8192)
	_ = o.Add(randVec(r, 8192))
	for b.Loop() {
		_ = m.Merge(o)
	}
}

func BenchmarkMeanResultK8192(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	m := NewMean(8192)
	for i := 0; i < 10; i++ {
		_ = m.Add(randVec(r, 8192))
	}
	for b.Loop() {
		_, _ = m.Result()
	}
}

func BenchmarkEMAAddK8192(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	v := randVec(r, 8192)
	e := NewEMA(8192, 0.9)
	step := int64(0)
	for b.Loop() {
		_ = e.AddBatch(step, v)
		step++
	}
}
