package filter

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/metrics"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/congrad-beam/congrad/congrad/gate"
	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/transforms/report"
)

func init() {
	register.Function2x0(renderDecisionBlock)
	register.Emitter1[string]()
	register.Function1x1(renderStats)
}

// renderDecisionBlock and renderStats print rows for passert (%v prints
// NaN as NaN, so it compares).
func renderDecisionBlock(b DecisionBlock, emit func(string)) {
	for _, d := range b.Rows {
		emit(fmt.Sprintf("%+v", d))
	}
}

func renderStats(st Stats) string { return fmt.Sprintf("%+v", st) }

// rankFixture is three languages' scores with ties, NaN and ±Inf, as
// score blocks of 37 rows (a language's rows spread over several blocks).
func rankFixture(nEn int) (items []keep.Scored, blocks []ScoreBlock) {
	rng := rand.New(rand.NewPCG(21, 22))
	for li, l := range []string{"en", "de", "sw"} {
		n := []int{nEn, 60, 1}[li]
		for i := range n {
			s := 0.15 + 0.2*rng.NormFloat64()
			switch {
			case i%9 == 4:
				s = float64(rng.IntN(5)) / 10 // ties
			case i%101 == 7:
				s = math.NaN()
			case i%103 == 8:
				s = math.Inf(-1)
			}
			items = append(items, keep.Scored{PairID: fmt.Sprintf("%s-%05d", l, rng.IntN(100000)*10+i%10), Lang: l, Score: s})
		}
	}
	// Ids must be unique within a language.
	seen := map[string]bool{}
	items = slices.DeleteFunc(items, func(x keep.Scored) bool {
		dup := seen[x.Lang+"/"+x.PairID]
		seen[x.Lang+"/"+x.PairID] = true
		return dup
	})
	for i := 0; i < len(items); {
		b := ScoreBlock{Lang: items[i].Lang}
		for ; i < len(items) && items[i].Lang == b.Lang && len(b.Rows) < 37; i++ {
			b.Rows = append(b.Rows, items[i])
		}
		blocks = append(blocks, b)
	}
	return items, blocks
}

// RankBlocks ranks a language in buckets (small RankBucketRows: dozens of
// buckets per language, cut exactly from a whole sample or from a partial
// one) and gives exactly the decisions and Stats of rankFn on each whole
// language, under every rule, with and without the audit columns.
func TestRankBucketsMatchWholeLanguage(t *testing.T) {
	for _, c := range []struct {
		nEn, bucketRows int
	}{{300, 7}, {5000, 300}} {
		items, blocks := rankFixture(c.nEn)
		for _, o := range []Options{
			{Keep: keep.Options{Rule: keep.Positive, Tau: 0.1}},
			{Keep: keep.Options{Rule: keep.Top, Rho: 0.3}, Audit: true},
			{Keep: keep.Options{Rule: keep.GlobalTop, Rho: 0.4}},
			{Keep: keep.Options{Rule: NoiseAware, Tau: 0.05}, Audit: true},
		} {
			name := fmt.Sprintf("n=%d/rows=%d/%s", c.nEn, c.bucketRows, o.Keep.Rule)
			o = rankOptions("test", o)
			r := newRankFn(o)
			cut, err := keep.GlobalCutoff(items, 0.4) // used under global-top only
			if err != nil {
				t.Fatal(err)
			}
			var wantDec, wantStats []any
			for _, l := range []string{"en", "de", "sw"} {
				var lang []keep.Scored
				for _, x := range items {
					if x.Lang == l {
						lang = append(lang, x)
					}
				}
				err := r.rank(l, lang, iterOf([]keep.Cutoff{cut}),
					func(d schemas.Decision) { wantDec = append(wantDec, fmt.Sprintf("%+v", d)) },
					func(st Stats) { wantStats = append(wantStats, renderStats(st)) })
				if err != nil {
					t.Fatal(err)
				}
			}
			o.RankBucketRows = c.bucketRows
			p, s := beam.NewPipelineWithRoot()
			dec, stats := RankBlocks(s, beam.CreateList(s, blocks), o)
			passert.Equals(s, beam.ParDo(s, renderDecisionBlock, dec), wantDec...)
			passert.Equals(s, beam.ParDo(s, renderStats, stats), wantStats...)
			res, err := ptest.RunWithMetrics(p)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			// The buckets: about nEn/bucketRows of en's, none much larger.
			var d metrics.DistributionValue
			for _, r := range res.Metrics().AllMetrics().Distributions() {
				if r.Key.Name == "rank_bucket_rows" {
					d = r.Result()
				}
			}
			if d.Count < int64(c.nEn/c.bucketRows) || d.Max > int64(c.bucketRows*3/2) || d.Sum != int64(len(items)) {
				t.Fatalf("%s: rank buckets %+v (%d rows, aim %d)", name, d, len(items), c.bucketRows)
			}
		}
	}
}

// The splitters cut a language into about rows/bucketRows buckets near the
// aim, the same whatever order the blocks come in or however the combine
// merges them; with the whole language in the sample, exactly.
func TestRankSplitters(t *testing.T) {
	items, blocks := rankFixture(20000)
	var en []ScoreBlock
	n := 0
	for _, b := range blocks {
		if b.Lang == "en" {
			en = append(en, b)
			n += len(b.Rows)
		}
	}
	f := &splittersFn{BucketRows: 1000}
	split := func(order []ScoreBlock, parts int) RankSplitters {
		accs := make([]rankSampleAcc, parts)
		for i, b := range order {
			accs[i%parts] = f.AddInput(accs[i%parts], b)
		}
		a := f.CreateAccumulator()
		for _, x := range accs {
			a = f.MergeAccumulators(a, x)
		}
		return f.ExtractOutput(a)
	}
	sp := split(en, 1)
	if len(sp.Keys) != (n+999)/1000-1 {
		t.Fatalf("%d rows in buckets of 1000: %d splitters", n, len(sp.Keys))
	}
	rev := slices.Clone(en)
	slices.Reverse(rev)
	if other := split(rev, 3); fmt.Sprint(other) != fmt.Sprint(sp) {
		t.Fatal("splitters depend on the order of the blocks or the merges")
	}
	sizes := make([]int, len(sp.Keys)+1)
	for _, x := range items {
		if x.Lang == "en" {
			sizes[sp.bucketOf(x)]++
		}
	}
	for b, sz := range sizes {
		if sz < 400 || sz > 2000 {
			t.Errorf("bucket %d holds %d rows (aim 1000): %v", b, sz, sizes)
		}
	}
	// All rows in the sample: cut exactly, buckets of equal size.
	small := &splittersFn{BucketRows: 10}
	var a rankSampleAcc
	a = small.AddInput(a, ScoreBlock{Lang: "sw", Rows: items[:95]})
	if sp := small.ExtractOutput(a); len(sp.Keys) != 9 {
		t.Fatalf("95 rows in buckets of 10: %d splitters", len(sp.Keys))
	} else {
		sorted := slices.Clone(items[:95])
		slices.SortFunc(sorted, keep.Better)
		sizes := make([]int, 10)
		for i, x := range sorted {
			b := sp.bucketOf(x)
			if i > 0 && b < sp.bucketOf(sorted[i-1]) {
				t.Fatalf("row %d of the best-first order in bucket %d, before it %d", i, b, sp.bucketOf(sorted[i-1]))
			}
			sizes[b]++
		}
		for _, sz := range sizes {
			if sz != 9 && sz != 10 {
				t.Fatalf("95 rows cut into %v", sizes)
			}
		}
	}
}

// rank decides one whole language at once and emits its decisions and
// Stats: the reference the bucketed ranking must equal.
func (f *rankFn) rank(lang string, items []keep.Scored, cutoffs func(*keep.Cutoff) bool,
	emit func(schemas.Decision), emitStats func(Stats)) error {
	vs, st, err := f.decide(lang, items, cutoffs)
	if err != nil {
		return err
	}
	var audit *schemas.Decision
	if f.Audit {
		st.ScoreType, st.Target, st.Rule = ScorePair, TargetConsensus, f.ruleText(st)
		audit = &schemas.Decision{ScoreType: st.ScoreType, Target: st.Target, Rule: st.Rule, Gate: GateNone}
	}
	emitDecisions(vs, &st, audit, emit)
	emitStats(st)
	return nil
}

// decide applies the rule to one language's items: the verdicts
// (best-first) and the language's Stats with its threshold (and noise fit)
// filled in; counts and distributions are filled by emitDecisions.
func (f *rankFn) decide(lang string, items []keep.Scored, cutoffs func(*keep.Cutoff) bool) ([]keep.Verdict, Stats, error) {
	var vs []keep.Verdict
	var err error
	st := Stats{Lang: lang, Threshold: math.NaN()}
	switch keep.Rule(f.Rule) {
	case keep.GlobalTop:
		var c keep.Cutoff
		if !cutoffs(&c) {
			return nil, st, fmt.Errorf("filter: language %s: global-top cutoff missing", lang)
		}
		vs, err = keep.DecideWithCutoff(items, c)
		if c.Keep > 0 {
			st.Threshold = c.Last.Score
		}
	case NoiseAware:
		var fits map[string]gate.NoiseFit
		vs, fits, err = gate.DecideNoiseAware(items, f.Noise)
		if fit, ok := fits[lang]; ok && err == nil {
			st.Threshold = fit.Tau
			st.Noise = []gate.NoiseFit{fit}
		}
	default:
		vs, err = keep.DecideLanguage(items, keep.Options{Rule: keep.Rule(f.Rule), Tau: f.Tau, Rho: f.Rho})
	}
	if err != nil {
		return nil, st, fmt.Errorf("filter: rank language %s (%d pairs): %w", lang, len(items), err)
	}
	switch keep.Rule(f.Rule) {
	case keep.Positive:
		st.Threshold = f.Tau
	case keep.Top:
		st.Threshold = math.NaN()
		for _, v := range vs {
			if v.Kept {
				st.Threshold = v.Score // the last kept pair (best-first order)
			}
		}
	}
	return vs, st, nil
}

// emitDecisions emits one language's verdicts as decisions (with the audit
// columns of audit, when given) and fills st's counts, quantiles and
// histogram.
func emitDecisions(vs []keep.Verdict, st *Stats, audit *schemas.Decision, emit func(schemas.Decision)) {
	st.N = int64(len(vs))
	st.Histogram = make([]int64, report.HistBins)
	scores := make([]float64, 0, len(vs))
	for _, v := range vs {
		emit(decisionOf(v, audit))
		if v.Kept {
			st.Kept++
		}
		if !math.IsNaN(v.Score) && !math.IsInf(v.Score, 0) {
			scores = append(scores, v.Score)
			st.Histogram[report.Bin(v.Score)]++
		}
	}
	slices.Sort(scores)
	st.Quantiles = report.Quantiles(scores)
}

// A bucket whose counts side input does not hold its own count (read before
// it was complete, or wrong) fails instead of ranking with a wrong first
// rank or finite count.
func TestRankBucketRefusesIncompleteCounts(t *testing.T) {
	var sb ScoreBlock
	sb.Lang = "en"
	for i := range 4 {
		sb.Rows = append(sb.Rows, keep.Scored{PairID: fmt.Sprintf("p%d", i), Lang: "en", Score: float64(i)})
	}
	for name, counts := range map[string][]BucketCount{"missing": nil, "short": {{N: 3, Finite: 3}}} {
		f := &rankBucketFn{R: *newRankFn(rankOptions("test", Options{Keep: keep.Options{Rule: keep.Top, Rho: 0.5}}))}
		cs := counts
		err := f.ProcessElement(context.Background(), bucketKey("en", 0), iterOf([]ScoreBlock{sb}),
			func(k *string, c *BucketCount) bool {
				if len(cs) == 0 {
					return false
				}
				*k, *c, cs = bucketKey("en", 0), cs[0], cs[1:]
				return true
			}, iterOf[keep.Cutoff](nil), iterOf[LangFit](nil), iterOf[Plan](nil),
			func(DecisionBlock) { t.Errorf("%s: decisions emitted", name) }, func(string, StatsPart) {})
		if err == nil || !strings.Contains(err.Error(), "holds 4 rows but its count says") {
			t.Errorf("%s counts: err = %v", name, err)
		}
	}
}
