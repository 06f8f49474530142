package vec

import (
	"math/rand/v2"
	"testing"

	"github.com/congrad-beam/congrad/congrad/internal/cputime"
	"gonum.org/v1/gonum/blas/blas32"
)

func benchVecs(n, k int) [][]float32 {
	r := rand.New(rand.NewPCG(1, 1))
	out := make([][]float32, n)
	for i := range out {
		out[i] = make([]float32, k)
		for j := range out[i] {
			out[i][j] = float32(r.NormFloat64())
		}
	}
	return out
}

var sinkF float64

// BenchmarkScoreCosine is the filter's inner loop: cos(s_i, g*) for many
// sketches s_i at k=8192 against one precomputed Target, on one core.
// Reports pairs/s (goal >= 100k/s). 64 distinct sketches (2 MiB) so the
// input does not sit in L1.
func BenchmarkScoreCosine(b *testing.B) {
	vs := benchVecs(65, 8192)
	tg, _ := NewTarget(vs[64])
	defer cputime.Lock()()
	n := 0
	t0 := cputime.Thread()
	for b.Loop() {
		for _, s := range vs[:64] {
			c, _ := tg.Cosine(s)
			sinkF += c
		}
		n += 64
	}
	b.ReportMetric(float64(n)/(cputime.Thread()-t0).Seconds(), "pairs/s")
}

// BenchmarkCosine is the package-level Cosine (computes both norms).
func BenchmarkCosine(b *testing.B) {
	vs := benchVecs(2, 8192)
	for b.Loop() {
		c, _ := Cosine(vs[0], vs[1])
		sinkF += c
	}
}

func BenchmarkDot8192(b *testing.B) {
	vs := benchVecs(2, 8192)
	b.SetBytes(2 * 4 * 8192)
	for b.Loop() {
		sinkF += Dot(vs[0], vs[1])
	}
}

// BenchmarkGonumDot8192 is gonum blas32.Dot (float32 accumulation, SIMD
// assembly on amd64) on the same vectors, for comparison.
func BenchmarkGonumDot8192(b *testing.B) {
	vs := benchVecs(2, 8192)
	x := blas32.Vector{N: 8192, Inc: 1, Data: vs[0]}
	y := blas32.Vector{N: 8192, Inc: 1, Data: vs[1]}
	b.SetBytes(2 * 4 * 8192)
	for b.Loop() {
		sinkF += float64(blas32.Dot(x, y))
	}
}

func BenchmarkGonumAxpy8192(b *testing.B) {
	vs := benchVecs(2, 8192)
	x := blas32.Vector{N: 8192, Inc: 1, Data: vs[0]}
	y := blas32.Vector{N: 8192, Inc: 1, Data: vs[1]}
	for b.Loop() {
		blas32.Axpy(1e-3, x, y)
	}
}

// BenchmarkScoreCosineNorm uses the norm stored with each sketch, so one
// inner product per pair.
func BenchmarkScoreCosineNorm(b *testing.B) {
	vs := benchVecs(65, 8192)
	norms := make([]float64, 64)
	for i := range norms {
		norms[i] = Norm(vs[i])
	}
	tg, _ := NewTarget(vs[64])
	defer cputime.Lock()()
	n := 0
	t0 := cputime.Thread()
	for b.Loop() {
		for i, s := range vs[:64] {
			c, _ := tg.CosineNorm(s, norms[i])
			sinkF += c
		}
		n += 64
	}
	b.ReportMetric(float64(n)/(cputime.Thread()-t0).Seconds(), "pairs/s")
}
