package pcgrad

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/congrad-beam/congrad/congrad/internal/cputime"
)

// BenchmarkConsensusL10K8192: PCGrad over 10 languages at k=8192 (goal < 1 ms).
// Directions share a common component plus noise, so some pairs conflict and
// projections fire, as in real data.
func BenchmarkConsensusL10K8192(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	common := make([]float64, 8192)
	for i := range common {
		common[i] = r.NormFloat64()
	}
	dirs := map[string][]float32{}
	for l := 0; l < 10; l++ {
		v := make([]float32, 8192)
		for i := range v {
			v[i] = float32(0.1*common[i] + r.NormFloat64())
		}
		dirs[fmt.Sprintf("l%d", l)] = v
	}
	var res Result
	defer cputime.Lock()()
	n, t0 := 0, cputime.Thread()
	for b.Loop() {
		res, _ = Consensus(dirs, 7)
		n++
	}
	b.ReportMetric(float64(res.Projections), "projections")
	b.ReportMetric(float64((cputime.Thread()-t0).Microseconds())/float64(n), "cpu-us/op")
}
