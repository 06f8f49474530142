package filter

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/congrad-beam/congrad/congrad/accum"
	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/congrad/pcgrad"
	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/congrad/vec"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/transforms/aggregate"
)

func TestMain(m *testing.M) { ptest.MainWithDefault(m, "prism") }

// hasRefs: kept pairs carry the reference log-probs of their sketch.
func hasRefs(p schemas.Pair) bool {
	return !math.IsNaN(p.RefChosenLogp) && !math.IsNaN(p.RefRejectedLogp)
}

func init() { register.Function1x1(hasRefs) }

const k = 48

// fixture builds pairs and their sketches (congrad/sketch over random
// gradients, languages partly conflicting) plus every kind of bad row.
type fixture struct {
	pairs    []schemas.Pair
	sketches []schemas.Sketch
	good     []schemas.Sketch // the sketches that should be scored
	badPairs int              // pairs that must become dead letters
	orphans  int              // sketch rows without a pair
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	spec := sketch.DefaultSpec()
	spec.K = k
	sk, err := sketch.New(spec)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	langs := []string{"de", "en", "hi", "zh"}
	var f fixture
	dir := map[string][]float32{}
	for i, l := range langs {
		d := make([]float32, 128)
		for j := range d {
			d[j] = float32(rng.NormFloat64())
			if i == 3 {
				d[j] = -dir["de"][j] + 0.5*d[j]
			}
		}
		dir[l] = d
	}
	for _, l := range langs {
		for i := 0; i < 25; i++ {
			g := make([]float32, 128)
			for j := range g {
				g[j] = 0.4*dir[l][j] + float32(rng.NormFloat64())
			}
			sk.Reset()
			if err := sk.Add("w", 0, g); err != nil {
				t.Fatal(err)
			}
			id := fmt.Sprintf("%s-%02d", l, i)
			f.pairs = append(f.pairs, schemas.Pair{PairID: id, Lang: l, Prompt: "p " + id, Chosen: "c", Rejected: "r",
				RefChosenLogp: math.NaN(), RefRejectedLogp: math.NaN()})
			s := schemas.Sketch{PairID: id, Lang: l, Values: sk.Sketch(), RefChosenLogp: -float64(i), RefRejectedLogp: -2 * float64(i)}
			f.sketches = append(f.sketches, s)
			f.good = append(f.good, s)
		}
	}
	bad := func(p schemas.Pair, sks ...schemas.Sketch) {
		f.pairs = append(f.pairs, p)
		f.sketches = append(f.sketches, sks...)
		f.badPairs++
	}
	vals := func(v float32, n int) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = v
		}
		return out
	}
	nan := vals(1, k)
	nan[3] = float32(math.NaN())
	bad(schemas.Pair{PairID: "x-nosketch", Lang: "en"})
	bad(schemas.Pair{PairID: "x-nan", Lang: "en"}, schemas.Sketch{PairID: "x-nan", Lang: "en", Values: nan})
	bad(schemas.Pair{PairID: "x-zero", Lang: "de"}, schemas.Sketch{PairID: "x-zero", Lang: "de", Values: vals(0, k)})
	bad(schemas.Pair{PairID: "x-dim", Lang: "de"}, schemas.Sketch{PairID: "x-dim", Lang: "de", Values: vals(1, k-1)})
	bad(schemas.Pair{PairID: "x-nolang", Lang: "de"}, schemas.Sketch{PairID: "x-nolang", Values: vals(1, k)})
	// Two pairs with one id: both dead (which one is right is unknowable).
	bad(schemas.Pair{PairID: "x-dup", Lang: "hi"})
	bad(schemas.Pair{PairID: "x-dup", Lang: "hi"})
	// An orphan sketch: scored (it is a valid sketch) but has no pair.
	orphan := schemas.Sketch{PairID: "x-orphan", Lang: "hi", Values: vals(0.5, k)}
	f.sketches = append(f.sketches, orphan)
	f.good = append(f.good, orphan)
	f.orphans = 1
	return f
}

// reference computes the verdicts in memory: the same maths without Beam.
func (f fixture) reference(t *testing.T, o keep.Options) []schemas.Decision {
	t.Helper()
	ms := map[string]*accum.Mean{}
	for _, s := range f.good {
		if ms[s.Lang] == nil {
			ms[s.Lang] = accum.NewMean(k)
		}
		if err := ms[s.Lang].Add(s.Values); err != nil {
			t.Fatal(err)
		}
	}
	dirs := map[string][]float32{}
	for l, m := range ms {
		dirs[l], _ = m.Result()
	}
	r, err := pcgrad.Consensus(dirs, 5)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := vec.NewTarget(r.Consensus)
	if err != nil {
		t.Fatal(err)
	}
	var items []keep.Scored
	for _, s := range f.good {
		c, err := tg.Cosine(s.Values)
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, keep.Scored{PairID: s.PairID, Lang: s.Lang, Score: c})
	}
	vs, err := keep.Decide(items, o)
	if err != nil {
		t.Fatal(err)
	}
	var out []schemas.Decision
	for _, v := range vs {
		if v.PairID == "x-orphan" || v.PairID == "x-dup" {
			continue // not in the decisions output: no (single) pair to attach to
		}
		out = append(out, schemas.Decision{PairID: v.PairID, Lang: v.Lang, Score: v.Score, Rank: v.Rank, Kept: v.Kept, Reason: v.Reason})
	}
	return out
}

func TestConflictsAllRules(t *testing.T) {
	f := newFixture(t)
	for _, o := range []keep.Options{
		{Rule: keep.Positive, Tau: 0},
		{Rule: keep.Positive, Tau: 0.2},
		{Rule: keep.Top, Rho: 0.3},
		{Rule: keep.GlobalTop, Rho: 0.4},
		{Rule: keep.GlobalTop, Rho: 1},
	} {
		t.Run(fmt.Sprintf("%s-%v-%v", o.Rule, o.Tau, o.Rho), func(t *testing.T) {
			want := f.reference(t, o)
			var nKept int
			var wantAny []any
			for _, d := range want {
				wantAny = append(wantAny, d)
				if d.Kept {
					nKept++
				}
			}
			if nKept == 0 || nKept == len(want) && o.Rho != 1 {
				t.Fatalf("fixture keeps %d of %d: the rule is not exercised", nKept, len(want))
			}
			p, s := beam.NewPipelineWithRoot()
			pairs := beam.CreateList(s, f.pairs)
			sks := beam.CreateList(s, f.sketches)
			valid, failed := Check(s, sks, k)
			aopts := aggregate.Options{K: k, Seed: 5}
			cons := aggregate.ConsensusOf(s, aggregate.PerLanguage(s, valid, aopts), aopts)
			res := Conflicts(s, valid, cons, Options{Keep: o})
			out := Split(s, pairs, res.Verdicts, beam.Flatten(s, failed, res.Failures), RefsOf(s, valid))
			passert.Equals(s, out.Decisions, wantAny...)
			passert.Count(s, out.Kept, "kept", nKept)
			passert.Count(s, out.Dropped, "dropped", len(want)-nKept)
			passert.Count(s, out.Dead, "dead", f.badPairs+f.orphans)
			passert.Count(s, res.Stats, "stats", 4)
			passert.True(s, out.Kept, hasRefs)
			if err := ptest.Run(p); err != nil {
				t.Fatalf("pipeline: %v", err)
			}
			// Accounting: every input pair row is kept, dropped or dead.
			if got := nKept + (len(want) - nKept) + f.badPairs; got != len(f.pairs) {
				t.Fatalf("accounting: %d kept+dropped+dead, %d pairs in", got, len(f.pairs))
			}
		})
	}
}

func TestGlobalCutoffMatchesReference(t *testing.T) {
	// Many exact ties and scores in one histogram bin, and non-finite
	// scores: the two-pass cutoff must still pick keep.GlobalCutoff's pair.
	rng := rand.New(rand.NewPCG(3, 4))
	var items []keep.Scored
	for i := 0; i < 500; i++ {
		sc := math.Round(rng.Float64()*20)/10 - 1
		if i%7 == 0 {
			sc = 0.2500001 + float64(i)*1e-9
		}
		switch i % 50 { // non-finite scores are neither counted nor cut at
		case 3:
			sc = math.NaN()
		case 4:
			sc = math.Inf(-1)
		}
		items = append(items, keep.Scored{PairID: fmt.Sprintf("p%03d", i), Lang: []string{"a", "b"}[i%2], Score: sc})
	}
	for _, rho := range []float64{0.01, 0.13, 0.5, 0.77, 1} {
		want, err := keep.GlobalCutoff(items, rho)
		if err != nil {
			t.Fatal(err)
		}
		p, s := beam.NewPipelineWithRoot()
		got := globalCutoff(s, beam.CreateList(s, items), rho)
		passert.Equals(s, got, want)
		if err := ptest.Run(p); err != nil {
			t.Fatalf("rho=%v: %v", rho, err)
		}
	}
}

func TestHistLocate(t *testing.T) {
	h := Hist{Counts: make([]int64, cutoffBins)}
	scores := []float64{0.9, 0.9, 0.5, 0.1, -0.3, -1}
	for _, s := range scores {
		h.Counts[cutoffBin(s)]++
	}
	sort.Float64s(scores)
	keepN, total, bin, above := h.locate(0.5)
	if keepN != 3 || total != 6 || bin != cutoffBin(0.5) || above != 2 {
		t.Fatalf("locate = %d %d %d %d", keepN, total, bin, above)
	}
}
