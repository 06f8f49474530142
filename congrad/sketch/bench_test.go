package sketch

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/congrad-beam/congrad/congrad/internal/cputime"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// benchGrad is a 16 MiB float32 gradient (4 Mi elements): larger than the
// caches, like a LoRA gradient, so "read" means memory bandwidth.
var benchGrad = func() []float32 {
	r := rand.New(rand.NewPCG(1, 2))
	g := make([]float32, 1<<22)
	for i := range g {
		g[i] = float32(r.NormFloat64() * 1e-3)
	}
	return g
}()

var sinkF float32

// readSum is the "plain read" baseline: the fastest simple scalar Go loop
// over the buffer (4 independent accumulators, so it is not add-latency bound).
func readSum(g []float32) float32 {
	var s0, s1, s2, s3 float32
	for len(g) >= 4 {
		s0 += g[0]
		s1 += g[1]
		s2 += g[2]
		s3 += g[3]
		g = g[4:]
	}
	return s0 + s1 + s2 + s3
}

// readSumNaive is the one-accumulator loop (bound by float add latency).
func readSumNaive(g []float32) float32 {
	var s float32
	for _, v := range g {
		s += v
	}
	return s
}

func BenchmarkReadSum(b *testing.B) {
	b.SetBytes(int64(4 * len(benchGrad)))
	for b.Loop() {
		sinkF = readSum(benchGrad)
	}
}

func BenchmarkReadSumNaive(b *testing.B) {
	b.SetBytes(int64(4 * len(benchGrad)))
	for b.Loop() {
		sinkF = readSumNaive(benchGrad)
	}
}

func BenchmarkCountSketch(b *testing.B) {
	sk, _ := New(DefaultSpec())
	b.SetBytes(int64(4 * len(benchGrad)))
	for b.Loop() {
		sk.Reset()
		_ = sk.Add("model.layers.0.w", 0, benchGrad)
		_ = sk.Sketch()
	}
}

// BenchmarkCountSketchVsRead times both on the same buffer in the same run
// (best of 3 each, in thread CPU time, so it is meaningful even with
// -benchtime 1x on a busy machine) and reports sketch throughput as a
// fraction of the plain-read throughput.
func BenchmarkCountSketchVsRead(b *testing.B) {
	sk, _ := New(DefaultSpec())
	cached, _ := New(DefaultSpec())
	cached.CacheCodes(len(benchGrad))
	_ = cached.Add("model.layers.0.w", 0, benchGrad)
	defer cputime.Lock()()
	best := func(f func()) time.Duration {
		d := time.Duration(1 << 62)
		for i := 0; i < 3; i++ {
			t0 := cputime.Thread()
			f()
			d = min(d, cputime.Thread()-t0)
		}
		return d
	}
	for b.Loop() {
		read := best(func() { sinkF = readSum(benchGrad) })
		naive := best(func() { sinkF = readSumNaive(benchGrad) })
		cs := best(func() {
			sk.Reset()
			_ = sk.Add("model.layers.0.w", 0, benchGrad)
			_ = sk.Sketch()
		})
		csc := best(func() {
			cached.Reset()
			_ = cached.Add("model.layers.0.w", 0, benchGrad)
			_ = cached.Sketch()
		})
		gb := float64(4*len(benchGrad)) / 1e9
		b.ReportMetric(gb/csc.Seconds(), "cached-GB/s")
		b.ReportMetric(read.Seconds()/csc.Seconds(), "cached-ratio-vs-read")
		b.ReportMetric(naive.Seconds()/csc.Seconds(), "cached-ratio-vs-naive-read")
		b.ReportMetric(gb/read.Seconds(), "read-GB/s")
		b.ReportMetric(gb/cs.Seconds(), "sketch-GB/s")
		b.ReportMetric(read.Seconds()/cs.Seconds(), "ratio-vs-read")
		b.ReportMetric(naive.Seconds()/cs.Seconds(), "ratio-vs-naive-read")
	}
}

// BenchmarkSketchFinalize is the per-pair cost of Sketch() at K=8192 (exact
// rounding of every bucket), paid once per gradient.
func BenchmarkSketchFinalize(b *testing.B) {
	sk, _ := New(DefaultSpec())
	_ = sk.Add("w", 0, benchGrad[:1<<16])
	for b.Loop() {
		_ = sk.Sketch()
	}
}

// BenchmarkGaussianVsGemv compares the block-wise gaussian sketch (which
// generates every entry) with blas32.Gemv on the same K×d shape with the
// matrix materialised, and reports the ratio of their times.
func BenchmarkGaussianVsGemv(b *testing.B) {
	const k, d = 256, 4096
	spec := Spec{Method: Gaussian, K: k, Seed: 1, Version: Version}
	g := benchGrad[:d]
	a := blas32.General{Rows: k, Cols: d, Stride: d, Data: make([]float32, k*d)}
	col := make([]float32, k)
	for j := 0; j < d; j++ {
		spec.GaussianColumn("w", j, col)
		for r := range col {
			a.Data[r*d+j] = col[r]
		}
	}
	y := blas32.Vector{N: k, Inc: 1, Data: make([]float32, k)}
	x := blas32.Vector{N: d, Inc: 1, Data: g}
	sk, _ := New(spec)
	defer cputime.Lock()()
	for b.Loop() {
		t0 := cputime.Thread()
		for i := 0; i < 20; i++ {
			blas32.Gemv(blas.NoTrans, 1, a, x, 0, y)
		}
		gemv := (cputime.Thread() - t0) / 20
		t0 = cputime.Thread()
		sk.Reset()
		_ = sk.Add("w", 0, g)
		_ = sk.Sketch()
		gs := cputime.Thread() - t0
		t0 = cputime.Thread()
		for j := 0; j < d; j++ {
			spec.GaussianColumn("w", j, col)
		}
		gen := cputime.Thread() - t0
		b.ReportMetric(float64(gemv.Microseconds()), "gemv-us")
		b.ReportMetric(float64(gs.Microseconds()), "gaussian-us")
		b.ReportMetric(float64(gen.Microseconds()), "generate-only-us")
		b.ReportMetric(gs.Seconds()/gemv.Seconds(), "gaussian/gemv")
		b.ReportMetric(float64(gs.Nanoseconds())/float64(k*d), "ns/entry")
	}
}

// BenchmarkCountSketchCached: the same gradient with CacheCodes, after the
// first gradient has filled the cache (the steady state of a pipeline).
func BenchmarkCountSketchCached(b *testing.B) {
	sk, _ := New(DefaultSpec())
	sk.CacheCodes(len(benchGrad))
	_ = sk.Add("model.layers.0.w", 0, benchGrad)
	b.SetBytes(int64(4 * len(benchGrad)))
	for b.Loop() {
		sk.Reset()
		_ = sk.Add("model.layers.0.w", 0, benchGrad)
		_ = sk.Sketch()
	}
}
