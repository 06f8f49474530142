// Package filter is ConGrad's conflict filter (METHOD.md §6) as Beam
// transforms: validate sketches against their pairs, score every admitted
// sketch against the consensus g* (a side input), rank within each
// language, apply the keep rule, and join the verdicts back onto the pairs
// so every pair leaves as kept, dropped or dead-letter.
//
//	val := filter.Validate(s, pairs, filter.MetasOf(s, sketches), upstream)
//	ok, bad := filter.Admit(s, sketches, val.Excluded, k)
//	... aggregate ok into g* ...
//	scored, unscorable := filter.Score(s, ok, consensus)
//	verdicts, stats := filter.Rank(s, scored, filter.Options{Keep: keep.DefaultOptions()})
//	out := filter.Split(s, pairs, verdicts, beam.Flatten(s, val.PairFailures, bad, unscorable), val.Refs)
//
// Validation comes first: a sketch is admitted only when exactly one pair
// and one sketch carry its pair id and both name the same language. It runs
// on Meta rows (id, language, reference log-probs), never on vectors: a
// CoGroupByKey of those with the pairs' (id, language) yields the small set
// of excluded ids, which the aggregation and scoring passes read as a side
// input. Orphans, duplicates and mismatches therefore never reach G_l, g*
// or a language's ranking; each rejected sketch row is a dead letter of its
// own and its pair, when there is one, a dead letter with the same reason.
//
// Sketch files (MetasOfFiles, AggregateFiles, ScoreFiles) are read in three
// passes over lakeio splits, each fused with its reader: the small columns
// for validation; all columns, checked and summed into one exact
// accumulator per language per split (combiner lifting by hand); all
// columns again, emitting only (pair id, language, score). No sketch vector
// crosses a stage boundary, so memory is O(L·k + one batch of BatchRows
// sketches) per worker whatever the number of pairs; the per-pair state is
// small rows (ids, scores, the excluded set).
//
// Memory of the ranking: each language's (pair id, score) rows are grouped
// on one worker, about 60 bytes per pair plus the id. global-top adds a
// fixed 4096-bin histogram and the rows of the one bin that holds the cutoff.
package filter

import (
	"context"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/congrad-beam/congrad/congrad/gate"
	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/congrad/vec"
	"github.com/congrad-beam/congrad/internal/sideinput"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/transforms/aggregate"
)

// Stage names the filter in dead-letter rows.
const Stage = "filter"

// NoiseAware is the keep rule of METHOD.md §8.1: per language, a
// mirrored two-component mixture fitted to the language's scores
// (gate.FitNoise) gives τ_l, and a pair is kept when its score is above
// its language's τ_l (gate.DecideNoiseAware). keep.Options.Tau is the
// fallback τ of a language whose fit is not usable.
const NoiseAware keep.Rule = "noise-aware"

// Options configure the filter.
type Options struct {
	Keep keep.Options
	// Noise parametrises the noise-aware rule (zero: gate.DefaultNoiseOptions
	// with FallbackTau = Keep.Tau).
	Noise gate.NoiseOptions
	// RankBucketRows is the rows RankBlocks aims to rank on one worker at
	// a time (0: DefaultRankBucketRows); a language with more is ranked in
	// buckets of contiguous score ranges (rankdist.go).
	RankBucketRows int
	// Audit fills the decisions' and the report's audit fields (score type
	// "pair", target "g*", the rule, gate "none") where Rank decides on
	// plain pair scores; the gate and group paths always fill them.
	Audit bool
}

// ValidateKeep checks keep options, accepting NoiseAware next to the rules
// of congrad/keep (its Tau is the fallback τ and must be finite).
func ValidateKeep(o keep.Options) error {
	if o.Rule == NoiseAware {
		return keep.Options{Rule: keep.Positive, Tau: o.Tau}.Validate()
	}
	return o.Validate()
}

// noise returns the noise-aware rule's options.
func (o Options) noise() gate.NoiseOptions {
	n := o.Noise
	if n == (gate.NoiseOptions{}) {
		n = gate.DefaultNoiseOptions()
		n.FallbackTau = o.Keep.Tau
	}
	return n
}

// Failure is a sketch (hence a pair) that cannot be scored, with the reason.
type Failure struct {
	PairID string
	Lang   string
	Reason string
}

// Stats is one language's summary for the run report.
type Stats struct {
	Lang      string
	N         int64     // pairs scored
	Kept      int64     // pairs kept
	Threshold float64   // the rule's cutoff in this language (NaN if none)
	Quantiles []float64 // at report.QuantileLevels
	Histogram []int64   // report.HistBins bins over [-1, 1]
	// Noise is the noise-aware rule's fit of this language (one element;
	// empty under the other rules).
	Noise []gate.NoiseFit
	// The method audit (METHOD.md §8.5), empty under the default options:
	// the score type, the target, the threshold rule and, when a language
	// gate ran, its verdict (one element).
	ScoreType, Target, Rule string
	Gate                    []GateVerdict
}

// GateVerdict is one language's gate verdict for the report.
type GateVerdict struct {
	Kind      string // leave-out | anchor
	Reference string // what G_l was compared with
	Cos       gate.CI
	Tested    bool // false: not tested (Reason says why)
	Gated     bool
	Reason    string
}

// Result is what Conflicts produces.
type Result struct {
	Verdicts beam.PCollection // PCollection<schemas.Decision>, one per scored sketch
	Failures beam.PCollection // PCollection<Failure>: sketches that could not be scored
	Stats    beam.PCollection // PCollection<Stats>, one per language
}

// Check splits sketches into valid ones (K finite values, non-zero, with a
// pair id and language) and failures, before anything aggregates them.
//
//	PCollection<schemas.Sketch> -> (PCollection<schemas.Sketch>, PCollection<Failure>)
func Check(s beam.Scope, sketches beam.PCollection, k int) (valid, failed beam.PCollection) {
	s = s.Scope("filter.Check")
	if k < 1 {
		panic(fmt.Sprintf("filter.Check: K=%d: want >= 1", k))
	}
	mustType("filter.Check", sketches, reflect.TypeOf(schemas.Sketch{}))
	return beam.ParDo2(s, &checkFn{K: k}, sketches)
}

type checkFn struct{ K int }

func (f *checkFn) ProcessElement(sk schemas.Sketch, ok func(schemas.Sketch), bad func(Failure)) {
	if r := checkSketch(sk, f.K); r != "" {
		bad(Failure{PairID: sk.PairID, Lang: sk.Lang, Reason: r})
		return
	}
	ok(sk)
}

// checkSketch returns why a sketch cannot be aggregated or scored, or "".
func checkSketch(sk schemas.Sketch, k int) string {
	switch {
	case sk.PairID == "":
		return reason(KindInvalid, "sketch without pair_id")
	case sk.Lang == "":
		return reason(KindInvalid, "sketch without lang")
	case len(sk.Values) != k:
		return reason(KindInvalid, "sketch has %d values, want k=%d", len(sk.Values), k)
	}
	// One pass for both value checks (finite, then nonzero: Norm != 0).
	switch finite, nonzero := vec.FiniteNonzero(sk.Values); {
	case !finite:
		return reason(KindInvalid, "non-finite sketch value")
	case !nonzero:
		return reason(KindInvalid, "zero sketch: cosine undefined")
	}
	return ""
}

// Conflicts scores valid sketches against the consensus and decides, per
// the keep rule, which pairs to keep.
//
//	PCollection<schemas.Sketch>, singleton PCollection<aggregate.Consensus> -> Result
func Conflicts(s beam.Scope, sketches, consensus beam.PCollection, opts Options) Result {
	s = s.Scope("filter.Conflicts")
	if opts.Keep.Rule == "" {
		opts.Keep.Rule = keep.Positive
	}
	if err := ValidateKeep(opts.Keep); err != nil {
		panic(fmt.Sprintf("filter.Conflicts: %v", err))
	}
	mustType("filter.Conflicts", sketches, reflect.TypeOf(schemas.Sketch{}))
	mustType("filter.Conflicts", consensus, reflect.TypeOf(aggregate.Consensus{}))

	scored, failed := Score(s, sketches, consensus)
	verdicts, stats := Rank(s, scored, opts)
	return Result{Verdicts: verdicts, Failures: failed, Stats: stats}
}

// Score computes cos(s_i, g*) for checked sketches; a sketch that cannot be
// scored (no usable consensus, non-finite cosine) is a Failure.
//
//	PCollection<schemas.Sketch>, singleton PCollection<aggregate.Consensus> -> (PCollection<keep.Scored>, PCollection<Failure>)
func Score(s beam.Scope, sketches, consensus beam.PCollection) (scored, failed beam.PCollection) {
	s = s.Scope("filter.Score")
	mustType("filter.Score", sketches, reflect.TypeOf(schemas.Sketch{}))
	mustType("filter.Score", consensus, reflect.TypeOf(aggregate.Consensus{}))
	return beam.ParDo2(s, &scoreFn{}, sketches, sideinput.Read(s, consensus))
}

// rankOptions defaults the keep rule to positive and panics (a construction
// error, as for a wrong PCollection type) on an invalid one.
func rankOptions(name string, opts Options) Options {
	if opts.Keep.Rule == "" {
		opts.Keep.Rule = keep.Positive
	}
	if err := ValidateKeep(opts.Keep); err != nil {
		panic(fmt.Sprintf("%s: %v", name, err))
	}
	return opts
}

// Rank ranks scored pairs within each language and applies the keep rule.
// It is RankBlocks on the scores batched per language in each bundle, so no
// worker holds more than a rank bucket of (pair id, score) rows
// (Options.RankBucketRows), never sketches.
//
//	PCollection<keep.Scored> -> (PCollection<schemas.Decision>, PCollection<Stats>)
func Rank(s beam.Scope, scored beam.PCollection, opts Options) (verdicts, stats beam.PCollection) {
	s = s.Scope("filter.Rank")
	opts = rankOptions("filter.Rank", opts)
	mustType("filter.Rank", scored, reflect.TypeOf(keep.Scored{}))
	decisions, stats := RankBlocks(s, beam.ParDo(s, &scoreBatchFn{}, scored), opts)
	return beam.ParDo(s, blockDecisions, decisions), stats
}

// scoreBatchFn batches a bundle's scores into ScoreBlocks per language of
// at most decisionBlockRows rows.
type scoreBatchFn struct{ rows map[string][]keep.Scored }

func (f *scoreBatchFn) StartBundle(_ context.Context, _ func(ScoreBlock)) {
	f.rows = map[string][]keep.Scored{}
}

func (f *scoreBatchFn) ProcessElement(x keep.Scored, emit func(ScoreBlock)) {
	rows := append(f.rows[x.Lang], x)
	if len(rows) >= decisionBlockRows {
		emit(ScoreBlock{Lang: x.Lang, Rows: rows})
		rows = nil
	}
	f.rows[x.Lang] = rows
}

func (f *scoreBatchFn) FinishBundle(_ context.Context, emit func(ScoreBlock)) {
	for _, lang := range slices.Sorted(maps.Keys(f.rows)) {
		if rows := f.rows[lang]; len(rows) > 0 {
			emit(ScoreBlock{Lang: lang, Rows: rows})
		}
	}
	f.rows = nil
}

func blockDecisions(b DecisionBlock, emit func(schemas.Decision)) {
	for _, d := range b.Rows {
		emit(d)
	}
}

func newRankFn(opts Options) *rankFn {
	f := &rankFn{Rule: string(opts.Keep.Rule), Tau: opts.Keep.Tau, Rho: opts.Keep.Rho, Audit: opts.Audit}
	if opts.Keep.Rule == NoiseAware {
		f.Noise = opts.noise()
	}
	return f
}

func mustType(name string, c beam.PCollection, want reflect.Type) {
	if got := c.Type().Type(); got != want {
		panic(fmt.Sprintf("%s: input must be PCollection<%v>, got %v", name, want, got))
	}
}

// scoreFn computes cos(s_i, g*). The consensus is the same for the whole run,
// so its norm is computed once per DoFn instance.
type scoreFn struct{ sc scorer }

func (f *scoreFn) ProcessElement(sk schemas.Sketch, cons func(*aggregate.Consensus) bool,
	ok func(keep.Scored), bad func(Failure)) {
	f.sc.score(sk, cons, ok, bad)
}

// scorer holds the consensus target once it has been read.
type scorer struct {
	target *vec.Target
	err    string
}

func (f *scorer) score(sk schemas.Sketch, cons func(*aggregate.Consensus) bool, ok func(keep.Scored), bad func(Failure)) {
	if f.target == nil && f.err == "" {
		var c aggregate.Consensus
		if !cons(&c) {
			f.err = reason(KindUnscorable, "no consensus direction")
		} else if t, err := vec.NewTarget(c.G); err != nil {
			f.err = reason(KindUnscorable, "consensus unusable: %v", err)
		} else {
			f.target = t
		}
	}
	if f.err != "" {
		bad(Failure{PairID: sk.PairID, Lang: sk.Lang, Reason: f.err})
		return
	}
	score, err := f.target.Cosine(sk.Values)
	if err != nil || math.IsNaN(score) || math.IsInf(score, 0) {
		bad(Failure{PairID: sk.PairID, Lang: sk.Lang, Reason: reason(KindUnscorable, "%s: %v", keep.ReasonNonFinite, err)})
		return
	}
	ok(keep.Scored{PairID: sk.PairID, Lang: sk.Lang, Score: score})
}

// rankFn is the keep rule's options (the rank buckets' and the audit's).
type rankFn struct {
	Rule     string
	Tau, Rho float64
	Noise    gate.NoiseOptions // noise-aware only
	Audit    bool
}

// Audit values (schemas.Decision's audit fields, report.json).
const (
	ScorePair       = "pair"                     // each pair's own score
	TargetConsensus = "g*"                       // PCGrad over every language (§5)
	TargetLeaveOut  = "g*_{-l}"                  // PCGrad over the open languages other than l (§8.2)
	TargetOpen      = "g* of the open languages" // a gated or lone language's pairs under leave-out
	TargetAnchor    = "anchor consensus"         // PCGrad over the open languages and the anchor (§8.3)
	GateNone        = "none"
	GateOpen        = "open"
	GateGated       = "gated"
)

// ruleText names the threshold rule that decided in a language, with its
// parameter (the fitted τ_l for noise-aware).
func (f *rankFn) ruleText(st Stats) string {
	switch keep.Rule(f.Rule) {
	case keep.Positive:
		return fmt.Sprintf("positive tau=%g", f.Tau)
	case keep.Top:
		return fmt.Sprintf("top rho=%g", f.Rho)
	case keep.GlobalTop:
		return fmt.Sprintf("global-top rho=%g", f.Rho)
	case NoiseAware:
		if len(st.Noise) == 1 && st.Noise[0].Fallback == "" {
			return fmt.Sprintf("noise-aware tau_l=%.6g", st.Noise[0].Tau)
		}
		return fmt.Sprintf("noise-aware fallback tau=%g", f.Noise.FallbackTau)
	}
	return f.Rule
}

// decisionOf is v as a decision, with the audit columns of audit when given.
func decisionOf(v keep.Verdict, audit *schemas.Decision) schemas.Decision {
	d := schemas.Decision{PairID: v.PairID, Lang: v.Lang, Score: v.Score, Rank: v.Rank, Kept: v.Kept, Reason: v.Reason}
	if audit != nil {
		d.ScoreType, d.Target, d.Rule, d.Gate = audit.ScoreType, audit.Target, audit.Rule, audit.Gate
	}
	return d
}

func init() {
	register.DoFn3x0[schemas.Sketch, func(schemas.Sketch), func(Failure)](&checkFn{})
	register.DoFn4x0[schemas.Sketch, func(*aggregate.Consensus) bool, func(keep.Scored), func(Failure)](&scoreFn{})
	beam.RegisterType(reflect.TypeOf((*scoreBatchFn)(nil)).Elem())
	register.Function2x0(blockDecisions)
	register.Emitter1[schemas.Sketch]()
	register.Emitter1[Failure]()
	register.Emitter1[keep.Scored]()
	register.Emitter1[schemas.Decision]()
	register.Emitter1[Stats]()
	register.Iter1[*aggregate.Consensus]()
	register.Iter1[*keep.Scored]()
	register.Iter1[*keep.Cutoff]()
	for _, t := range []any{Failure{}, Stats{}, keep.Scored{}, keep.Cutoff{}, schemas.Decision{}, schemas.Sketch{}, schemas.Pair{}, schemas.DeadLetter{}} {
		beam.RegisterType(reflect.TypeOf(t))
	}
	registerCutoff()
	registerSplit()
	registerValidate()
	registerFiles()
	registerMethod()
	registerBlocks()
	registerBind()
	registerRankBuckets()
}
