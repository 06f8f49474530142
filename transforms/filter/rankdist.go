package filter

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/congrad-beam/congrad/congrad/gate"
	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/transforms/report"
)

// Ranking in buckets (RankBlocks; Rank and RankPlan batch their scores
// into blocks and rank them the same way). A rank is a position in the whole
// language's best-first order, but no worker needs the whole language to
// find it: the order is cut into buckets of contiguous ranges, each bucket
// is sorted on its own worker, and its first rank is the number of rows in
// the language's better buckets.
//
//  1. Splitters (a combine per language, O(rankSample) state): the count of
//     rows and the rankSample rows with the smallest id hashes, a sample
//     independent of the scores. B = ⌈rows/bucketRows⌉ buckets, cut at
//     B−1 rows evenly spaced in the sample's best-first order (keep.Better:
//     a total order, so ties and non-finite scores are cut like any row).
//  2. Assign: each score block's rows go to their bucket (a binary search
//     over the splitters, a side input of about L·B rows) and are counted
//     per bucket.
//  3. Rank: one bucket at a time, sorted by keep.Better and decided by
//     keep.DecideRanked (the noise fit's τ_l under noise-aware) with its
//     first position and the language's finite count taken from the counts
//     (a side input of L·B numbers). Decisions leave in DecisionBlocks; each
//     bucket sends its part of the language's Stats: counts, histogram, and
//     the quantiles and top-ρ threshold whose positions fall in it. Under a
//     plan (RankPlan) the bucket also applies the plan's gate, group
//     reasons and audit fields to its rows.
//  4. Stats: a language's parts are summed.
//
// The verdicts and Stats are those of ranking the whole language at once,
// whatever the buckets (TestRankBucketsMatchWholeLanguage). Under
// noise-aware, τ_l is fitted on the language's finite scores, gathered by a
// combine (8 bytes a pair on one worker: EM passes over all of them).

// DefaultRankBucketRows is the rows a rank bucket aims at when
// Options.RankBucketRows is 0: ~16 MB of rows on a worker while it sorts.
const DefaultRankBucketRows = 1 << 18

// rankSample is the sample per language the splitters are drawn from. A
// language whose rows are all in the sample is cut exactly; otherwise into
// at most rankSample/16 buckets, so each bucket has ~16 sample rows and
// its size stays near the aim (a language of more than
// rankSample/16·bucketRows rows gets larger buckets).
const rankSample = 4096

// rankSampleAcc is the splitters combine's accumulator: the number of rows
// and the sampled rows (at most 2·rankSample before a compaction). Once a
// compaction has kept rankSample rows, a row hashed above the largest kept
// hash (Bound) cannot be in the sample and is not added.
type rankSampleAcc struct {
	N        int64
	Rows     []sampleRow
	Bound    uint64
	HasBound bool
}

// compact keeps the sample's rows and sets the bound.
func (a *rankSampleAcc) compact() {
	a.Rows = compactSample(a.Rows)
	if len(a.Rows) == rankSample {
		a.Bound, a.HasBound = a.Rows[rankSample-1].H, true
	}
}

type sampleRow struct {
	H   uint64
	Row keep.Scored
}

// RankSplitters are one language's bucket boundaries, best-first: bucket b
// holds the rows after Keys[b-1] (inclusive) and before Keys[b].
type RankSplitters struct{ Keys []keep.Scored }

// bucketOf is the bucket of x: the number of splitters at or before x.
func (sp RankSplitters) bucketOf(x keep.Scored) int {
	return sort.Search(len(sp.Keys), func(i int) bool { return keep.Better(x, sp.Keys[i]) < 0 })
}

// idHash64 is the sample's hash of a pair id (FNV-1a, 64 bits).
func idHash64(id string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return h
}

// splittersFn is the combine of step 1.
type splittersFn struct{ BucketRows int }

func (f *splittersFn) CreateAccumulator() rankSampleAcc { return rankSampleAcc{} }

func (f *splittersFn) AddInput(a rankSampleAcc, b ScoreBlock) rankSampleAcc {
	a.N += int64(len(b.Rows))
	for _, x := range b.Rows {
		h := idHash64(x.PairID)
		if a.HasBound && h > a.Bound {
			continue
		}
		a.Rows = append(a.Rows, sampleRow{H: h, Row: x})
		if len(a.Rows) >= 2*rankSample {
			a.compact()
		}
	}
	return a
}

func (f *splittersFn) MergeAccumulators(a, b rankSampleAcc) rankSampleAcc {
	a.N += b.N
	a.Rows = append(a.Rows, b.Rows...)
	a.compact()
	return a
}

// ExtractOutput draws the splitters from the sample.
func (f *splittersFn) ExtractOutput(a rankSampleAcc) RankSplitters {
	rows := compactSample(a.Rows)
	sample := make([]keep.Scored, len(rows))
	for i, r := range rows {
		sample[i] = r.Row
	}
	slices.SortFunc(sample, keep.Better)
	most := len(sample) // the sample is the language: cut anywhere
	if a.N > int64(len(sample)) {
		most = max(1, len(sample)/16)
	}
	b := int(min((a.N+int64(f.BucketRows)-1)/int64(f.BucketRows), int64(most)))
	var sp RankSplitters
	for j := 1; j < b; j++ {
		sp.Keys = append(sp.Keys, sample[j*len(sample)/b])
	}
	return sp
}

// compactSample keeps the rankSample rows with the smallest (hash, row):
// the same rows whatever order they came in.
func compactSample(rows []sampleRow) []sampleRow {
	if len(rows) <= rankSample {
		return rows
	}
	slices.SortFunc(rows, func(a, b sampleRow) int {
		if c := cmp.Compare(a.H, b.H); c != 0 {
			return c
		}
		return keep.Better(a.Row, b.Row)
	})
	return slices.Clip(rows[:rankSample])
}

// BucketCount is the rows of one rank bucket, and how many have a finite
// score.
type BucketCount struct{ N, Finite int64 }

func addBucketCounts(a, b BucketCount) BucketCount {
	return BucketCount{N: a.N + b.N, Finite: a.Finite + b.Finite}
}

// bucketKey names bucket b of lang ("b/lang").
func bucketKey(lang string, b int) string { return strconv.Itoa(b) + "/" + lang }

func parseBucketKey(key string) (lang string, b int, err error) {
	num, lang, ok := strings.Cut(key, "/")
	if b, err = strconv.Atoi(num); !ok || err != nil {
		return "", 0, fmt.Errorf("filter: bad rank bucket key %q", key)
	}
	return lang, b, nil
}

// assignFn is step 2: a score block's rows, by bucket.
type assignFn struct{}

func (f *assignFn) ProcessElement(b ScoreBlock, splitters func(*string, *RankSplitters) bool,
	emit func(string, ScoreBlock), count func(string, BucketCount)) error {
	var sp RankSplitters
	found := false
	var lang string
	var x RankSplitters
	for splitters(&lang, &x) {
		if lang == b.Lang {
			sp, found = x, true
		}
	}
	if !found {
		return fmt.Errorf("filter: no rank splitters for language %q", b.Lang)
	}
	counts := make([]BucketCount, len(sp.Keys)+1)
	var parts [][]keep.Scored // by bucket; a one-bucket language's block goes as it is
	if len(sp.Keys) > 0 {
		parts = make([][]keep.Scored, len(counts))
	}
	for _, r := range b.Rows {
		k := sp.bucketOf(r)
		counts[k].N++
		if finiteScore(r.Score) {
			counts[k].Finite++
		}
		if parts != nil {
			parts[k] = append(parts[k], r)
		}
	}
	for k, c := range counts {
		if c.N == 0 {
			continue
		}
		part := b
		if parts != nil {
			part = ScoreBlock{Lang: b.Lang, Rows: parts[k]}
		}
		emit(bucketKey(b.Lang, k), part)
		count(bucketKey(b.Lang, k), c)
	}
	return nil
}

// LangFit is one language's noise fit (noise-aware rule).
type LangFit struct {
	Lang string
	Fit  gate.NoiseFit
}

// noiseScoresFn gathers a language's finite scores and fits τ_l on them.
type noiseScoresFn struct{ Noise gate.NoiseOptions }

type noiseScores struct{ S []float64 }

func (f *noiseScoresFn) CreateAccumulator() noiseScores { return noiseScores{} }

func (f *noiseScoresFn) AddInput(a noiseScores, b ScoreBlock) noiseScores {
	for _, x := range b.Rows {
		if finiteScore(x.Score) {
			a.S = append(a.S, x.Score)
		}
	}
	return a
}

func (f *noiseScoresFn) MergeAccumulators(a, b noiseScores) noiseScores {
	a.S = append(a.S, b.S...)
	return a
}

func (f *noiseScoresFn) ExtractOutput(a noiseScores) (gate.NoiseFit, error) {
	return gate.FitNoise(a.S, f.Noise) // order-free: FitNoise sums in sorted order
}

func langFit(lang string, fit gate.NoiseFit) LangFit { return LangFit{Lang: lang, Fit: fit} }

// StatsPart is one rank bucket's share of its language's Stats (the audit
// fields are the language's, the same in every part).
type StatsPart struct {
	ScoreType, Target, Rule string
	Gate                    []GateVerdict
	N, Kept                 int64
	Histogram               []int64
	// QLevel[i] is an index into report.QuantileLevels whose order
	// statistic lies in the bucket, QValue[i] its score.
	QLevel       []int
	QValue       []float64
	Threshold    float64
	HasThreshold bool
	Noise        []gate.NoiseFit
}

// rankBucketFn is step 3. Under a plan (RankPlan) the plan decides the
// audit fields, a gated language's pairs are not kept and group scores'
// reasons are prefixed, as rankPlanFn did on a whole language.
type rankBucketFn struct {
	R    rankFn
	Plan bool
}

// bucketRowsDist is the rows of each rank bucket (a Beam distribution: the
// runner's UI shows the largest, which bounds a worker's ranking memory).
var bucketRowsDist = beam.NewDistribution("congrad.filter", "rank_bucket_rows")

func (f *rankBucketFn) ProcessElement(ctx context.Context, key string, blocks func(*ScoreBlock) bool, counts func(*string, *BucketCount) bool,
	cutoffs func(*keep.Cutoff) bool, fits func(*LangFit) bool, plans func(*Plan) bool,
	emit func(DecisionBlock), emitPart func(string, StatsPart)) error {
	lang, bucket, err := parseBucketKey(key)
	if err != nil {
		return err
	}
	var rows []keep.Scored
	var b ScoreBlock
	for blocks(&b) {
		rows = append(rows, b.Rows...)
	}
	bucketRowsDist.Update(ctx, int64(len(rows)))
	first, nFinite, own := 0, 0, int64(-1)
	var ck string
	var c BucketCount
	for counts(&ck, &c) {
		l, cb, err := parseBucketKey(ck)
		if err != nil {
			return err
		}
		if l != lang {
			continue
		}
		nFinite += int(c.Finite)
		if cb < bucket {
			first += int(c.N)
		}
		if cb == bucket {
			own = c.N
		}
	}
	// The counts were taken from the same rows; a mismatch means a side
	// input read before it was complete (internal/sideinput), which would
	// otherwise rank silently wrong.
	if own != int64(len(rows)) {
		return fmt.Errorf("filter: rank bucket %s holds %d rows but its count says %d", key, len(rows), own)
	}
	// Sketches of one pair id are excluded before scoring (ValidateBlocks);
	// were two left, SplitFiles would dead-letter the pair for its two
	// verdicts.
	slices.SortFunc(rows, keep.Better)
	part := StatsPart{Threshold: math.NaN()}
	var vs []keep.Verdict
	switch keep.Rule(f.R.Rule) {
	case NoiseAware:
		var lf LangFit
		for fits(&lf) {
			if lf.Lang == lang {
				part.Noise = []gate.NoiseFit{lf.Fit}
			}
		}
		if part.Noise == nil {
			return fmt.Errorf("filter: language %s: noise fit missing", lang)
		}
		vs = gate.DecideNoiseRanked(rows, first, nFinite, part.Noise[0])
		part.Threshold, part.HasThreshold = part.Noise[0].Tau, true
	case keep.GlobalTop:
		var c keep.Cutoff
		if !cutoffs(&c) {
			return fmt.Errorf("filter: language %s: global-top cutoff missing", lang)
		}
		vs = keep.DecideRanked(rows, first, nFinite, keep.Options{Rule: keep.GlobalTop, Rho: f.R.Rho}, c)
		if c.Keep > 0 {
			part.Threshold, part.HasThreshold = c.Last.Score, true
		}
	default:
		vs = keep.DecideRanked(rows, first, nFinite, keep.Options{Rule: keep.Rule(f.R.Rule), Tau: f.R.Tau, Rho: f.R.Rho}, keep.Cutoff{})
		if keep.Rule(f.R.Rule) == keep.Positive {
			part.Threshold, part.HasThreshold = f.R.Tau, true
		} else if n := keep.KeepCount(nFinite, f.R.Rho); n > first && n <= first+len(rows) {
			part.Threshold, part.HasThreshold = rows[n-1-first].Score, true // the last kept pair
		}
	}
	var audit *schemas.Decision
	rule := f.R.ruleText(Stats{Noise: part.Noise})
	switch {
	case f.Plan:
		var p Plan
		if !plans(&p) {
			return fmt.Errorf("filter: plan missing")
		}
		audit = &schemas.Decision{ScoreType: p.ScoreType, Target: TargetConsensus, Rule: rule, Gate: GateNone}
		if i := p.index(lang); i >= 0 {
			if i < len(p.TargetNames) {
				audit.Target = p.TargetNames[i]
			}
			if i < len(p.GateTags) {
				audit.Gate = p.GateTags[i]
			}
			if i < len(p.Gates) {
				part.Gate = []GateVerdict{p.Gates[i]}
			}
		}
		if p.ScoreType != ScorePair {
			vs = gate.GroupReasons(vs)
		}
		if len(part.Gate) == 1 && part.Gate[0].Gated {
			vs = gate.Apply(vs, gate.Gating{Langs: []gate.LangGate{{Lang: lang, Gated: true, Reason: part.Gate[0].Reason}}})
		}
	case f.R.Audit:
		audit = &schemas.Decision{ScoreType: ScorePair, Target: TargetConsensus, Rule: rule, Gate: GateNone}
	}
	if audit != nil {
		part.ScoreType, part.Target, part.Rule = audit.ScoreType, audit.Target, audit.Rule
	}
	part.N = int64(len(vs))
	part.Histogram = make([]int64, report.HistBins)
	var out DecisionBlock
	for _, v := range vs {
		if out.Rows == nil {
			out.Rows = make([]schemas.Decision, 0, min(len(vs), decisionBlockRows))
		}
		out.Rows = append(out.Rows, decisionOf(v, audit))
		if len(out.Rows) == decisionBlockRows {
			emit(out)
			out.Rows = nil
		}
		if v.Kept {
			part.Kept++
		}
		if finiteScore(v.Score) {
			part.Histogram[report.Bin(v.Score)]++
		}
	}
	if len(out.Rows) > 0 {
		emit(out)
	}
	// report.Quantiles takes the ascending index ⌈q·n⌉−1 of the finite
	// scores: position n−1−that in the best-first order.
	for i, q := range report.QuantileLevels {
		if nFinite == 0 {
			break
		}
		pos := nFinite - 1 - max(int(math.Ceil(q*float64(nFinite)))-1, 0)
		if pos >= first && pos < first+len(rows) {
			part.QLevel, part.QValue = append(part.QLevel, i), append(part.QValue, rows[pos-first].Score)
		}
	}
	emitPart(lang, part)
	return nil
}

// langStatsFn is step 4: a language's parts summed into its Stats.
type langStatsFn struct{}

func (f *langStatsFn) ProcessElement(lang string, parts func(*StatsPart) bool, emit func(Stats)) error {
	st := Stats{Lang: lang, Threshold: math.NaN(), Histogram: make([]int64, report.HistBins)}
	var p StatsPart
	for parts(&p) {
		st.N += p.N
		st.Kept += p.Kept
		for i, c := range p.Histogram {
			st.Histogram[i] += c
		}
		for i, lvl := range p.QLevel {
			if st.Quantiles == nil {
				st.Quantiles = make([]float64, len(report.QuantileLevels))
			}
			st.Quantiles[lvl] = p.QValue[i]
		}
		if p.HasThreshold {
			st.Threshold = p.Threshold
		}
		if p.Noise != nil {
			st.Noise = p.Noise
		}
		st.ScoreType, st.Target, st.Rule, st.Gate = p.ScoreType, p.Target, p.Rule, p.Gate
	}
	emit(st)
	return nil
}

func registerRankBuckets() {
	for _, x := range []any{&splittersFn{}, &assignFn{}, &noiseScoresFn{}, &rankBucketFn{}, &langStatsFn{}} {
		beam.RegisterType(reflect.TypeOf(x).Elem())
	}
	for _, x := range []any{rankSampleAcc{}, sampleRow{}, RankSplitters{}, BucketCount{}, LangFit{}, noiseScores{}, StatsPart{}} {
		beam.RegisterType(reflect.TypeOf(x))
	}
	register.Function2x1(addBucketCounts)
	register.Function2x1(langFit)
}
