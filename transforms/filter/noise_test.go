package filter

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/congrad-beam/congrad/congrad/gate"
	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/schemas"
)

// The noise-aware rule in Rank (Beam, ranked in buckets) gives the
// verdicts, thresholds and fits of gate.DecideNoiseAware on the same scores,
// with the audit columns naming the rule; a language too small to fit falls
// back to --tau and says so.
func TestRankNoiseAwareMatchesGate(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	var items []keep.Scored
	for li, l := range []string{"de", "en", "sw"} {
		n := []int{200, 120, 8}[li]
		eta := []float64{0.1, 0.3, 0.2}[li]
		for i := 0; i < n; i++ {
			s := 0.2 + 0.1*rng.NormFloat64()
			if rng.Float64() < eta {
				s = -s
			}
			items = append(items, keep.Scored{PairID: fmt.Sprintf("%s-%03d", l, i), Lang: l, Score: s})
		}
	}
	o := Options{Keep: keep.Options{Rule: NoiseAware, Tau: 0.05}, Audit: true}
	no := gate.DefaultNoiseOptions()
	no.FallbackTau = 0.05
	vs, fits, err := gate.DecideNoiseAware(items, no)
	if err != nil {
		t.Fatal(err)
	}
	if fits["sw"].Fallback == "" || fits["de"].Fallback != "" || fits["en"].Fallback != "" {
		t.Fatalf("fixture: fits %+v", fits)
	}
	var want []any
	for _, v := range vs {
		rule := fmt.Sprintf("noise-aware tau_l=%.6g", fits[v.Lang].Tau)
		if fits[v.Lang].Fallback != "" {
			rule = "noise-aware fallback tau=0.05"
		}
		want = append(want, schemas.Decision{PairID: v.PairID, Lang: v.Lang, Score: v.Score, Rank: v.Rank, Kept: v.Kept,
			Reason: v.Reason, ScoreType: ScorePair, Target: TargetConsensus, Rule: rule, Gate: GateNone})
	}
	var wantStats []any
	for _, l := range []string{"de", "en", "sw"} {
		wantStats = append(wantStats, statKey{Lang: l, Tau: fits[l].Tau, Mu: fits[l].Mu, Eta: fits[l].Eta, Fallback: fits[l].Fallback})
	}
	for _, rows := range []int{0, 17} { // the default: one bucket per language; 17: several
		o.RankBucketRows = rows
		p, s := beam.NewPipelineWithRoot()
		dec, stats := Rank(s, beam.CreateList(s, items), o)
		passert.Equals(s, dec, want...)
		passert.Equals(s, beam.ParDo(s, toStatKey, stats), wantStats...)
		if err := ptest.Run(p); err != nil {
			t.Fatalf("rank bucket rows %d: %v", rows, err)
		}
	}
}

type statKey struct {
	Lang         string
	Tau, Mu, Eta float64
	Fallback     string
}

func toStatKey(st Stats) statKey {
	if len(st.Noise) != 1 || st.Threshold != st.Noise[0].Tau {
		return statKey{Lang: "bad stats " + st.Lang}
	}
	f := st.Noise[0]
	return statKey{Lang: st.Lang, Tau: f.Tau, Mu: f.Mu, Eta: f.Eta, Fallback: f.Fallback}
}

func init() {
	beam.RegisterFunction(toStatKey)
	beam.RegisterType(reflectTypeOf(statKey{}))
}

func reflectTypeOf(x any) reflect.Type { return reflect.TypeOf(x) }
