package pipelines

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/congrad-beam/congrad/congrad/accum"
	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/schemas"
)

// synthFn generates pairs and sketches inside the pipeline (a Create of
// 100k sketches would put them all into the job description): shard i makes
// rows [i*Per, (i+1)*Per), each from its own seeded generator.
type synthFn struct {
	Per, K int
}

var benchLangs = []string{"ar", "de", "en", "es", "fr", "hi", "ja", "ru", "th", "zh"}

func (f *synthFn) ProcessElement(shard int, pairs func(schemas.Pair), sketches func(schemas.Sketch)) {
	dir := rand.New(rand.NewPCG(1, 1))
	base := make([][]float32, len(benchLangs))
	for l := range base {
		base[l] = make([]float32, f.K)
		for j := range base[l] {
			base[l][j] = float32(dir.NormFloat64())
		}
	}
	for i := shard * f.Per; i < (shard+1)*f.Per; i++ {
		r := rand.New(rand.NewPCG(2, uint64(i)))
		l := i % len(benchLangs)
		id := fmt.Sprintf("p%08d", i)
		v := make([]float32, f.K)
		for j := range v {
			v[j] = 0.2*base[l][j] + float32(r.NormFloat64())
		}
		pairs(schemas.Pair{PairID: id, Lang: benchLangs[l], Prompt: "p", Chosen: "c", Rejected: "r"})
		sketches(schemas.Sketch{PairID: id, Lang: benchLangs[l], Values: v})
	}
}

func init() {
	register.DoFn3x0[int, func(schemas.Pair), func(schemas.Sketch)](&synthFn{})
}

// BenchmarkSelectScaling runs Select (check, per-language mean, PCGrad,
// scoring, ranking, join) on 1k, 10k and 100k synthetic sketches on
// in-process Prism. Time should grow linearly (ns/sketch flat); the
// aggregation state is L per-language accumulators of k coordinates
// (agg_bytes), whatever the number of pairs. peak_heap_MB is the whole
// process (Prism keeps every PCollection in memory), for context.
func BenchmarkSelectScaling(b *testing.B) {
	const k = 256
	spec := sketch.DefaultSpec()
	spec.K = k
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("sketches=%d", n), func(b *testing.B) {
			shards := 20
			var peak atomic.Uint64
			stop := make(chan struct{})
			go func() {
				var ms runtime.MemStats
				for {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
						runtime.ReadMemStats(&ms)
						if ms.HeapInuse > peak.Load() {
							peak.Store(ms.HeapInuse)
						}
					}
				}
			}()
			var took time.Duration
			for i := 0; i < b.N; i++ {
				runtime.GC()
				p, s := beam.NewPipelineWithRoot()
				ids := make([]int, shards)
				for j := range ids {
					ids[j] = j
				}
				pairs, sks := beam.ParDo2(s, &synthFn{Per: n / shards, K: k}, beam.Reshuffle(s, beam.CreateList(s, ids)))
				if _, err := Select(s, pairs, sks, SelectOptions{Spec: spec, Seed: 1, Keep: keep.Options{Rule: keep.Top, Rho: 0.5}}); err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				if err := ptest.Run(p); err != nil {
					b.Fatal(err)
				}
				took += time.Since(t0)
			}
			close(stop)
			b.ReportMetric(float64(took.Nanoseconds())/float64(n*b.N), "ns/sketch")
			b.ReportMetric(float64(len(benchLangs)*k*accum.LimbsPerCoord*8), "agg_bytes")
			b.ReportMetric(float64(peak.Load())/(1<<20), "peak_heap_MB")
		})
	}
}
