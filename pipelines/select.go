// Package pipelines builds whole ConGrad pipelines from the transforms:
// Generate (prompts -> pairs), Sketch (pairs -> sketches), Select (pairs +
// sketches -> kept / dropped / decisions / dead letters / report), and Run,
// which chains all three in one pipeline.
package pipelines

import (
	"context"
	"fmt"
	"reflect"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/pipelines/progress"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/transforms/aggregate"
	"github.com/congrad-beam/congrad/transforms/filter"
	"github.com/congrad-beam/congrad/transforms/lakeio"
	"github.com/congrad-beam/congrad/transforms/report"
)

func init() {
	register.DoFn2x2[context.Context, filter.LangCount, string, int64](&langCountKeyFn{})
	register.Function2x1(sumCounts)
	register.Function2x1(toCount64)
}

// SelectOptions configure the aggregation and the filter.
type SelectOptions struct {
	Spec      sketch.Spec // the sketches' spec; Spec.K is the dimension every sketch must have
	Aggregate string      // mean | ema
	Gamma     float64     // ema decay
	Seed      uint64      // PCGrad permutation seed
	Keep      keep.Options

	// The method options of METHOD.md §8 (issue 13); zero values are the
	// paper's pair filter.
	Gate      string // GateNone ("" too) | GateLeaveOut | GateAnchor
	Anchor    string // glob of anchor sketch files (GateAnchor), or pair files with AnchorPairs
	GroupSize int    // 0: score pairs; N >= 2: score groups of about N pairs

	// Settings of the method options (method_opts.go); zero: the defaults
	// of congrad/gate.
	AnchorPairs   bool    // Anchor names pair files: BuildRun sketches them like the run's pairs
	GateBoot      int     // the gate's bootstrap resamples B (0: 1000)
	GateLevel     float64 // the gate's two-sided confidence level (0: 0.95)
	NoiseMinPairs int     // noise-aware rule: fewest finite scores for a fit (0: 20)

	// RankBucketRows is the pairs ranked on one worker at a time when the
	// pairs come from files (filter.Options.RankBucketRows; 0:
	// filter.DefaultRankBucketRows): a language with more is ranked in
	// buckets of contiguous score ranges. The outputs do not depend on it.
	RankBucketRows int

	groupsHeld     int              // tests: the group pass's flush cap (0: its memory budget)
	spillDir       string           // Config.SpillDir, for the group pass (filter.Method.SpillDir)
	anchorSketches beam.PCollection // BuildRun: PCollection<schemas.Sketch> of the anchor pairs
}

// Language gates (SelectOptions.Gate).
const (
	GateNone     = "none"
	GateLeaveOut = "leave-out"
	GateAnchor   = "anchor"
)

// Validate fills defaults and checks the options once, before construction.
func (o *SelectOptions) Validate() error {
	if err := o.Spec.Validate(); err != nil {
		return fmt.Errorf("select: sketch spec: %w", err)
	}
	a := o.aggregate()
	if err := a.Validate(); err != nil {
		return fmt.Errorf("select: %w", err)
	}
	o.Aggregate, o.Gamma = a.Method, a.Gamma
	if o.Keep.Rule == "" {
		o.Keep.Rule = keep.Positive
	}
	if err := filter.ValidateKeep(o.Keep); err != nil {
		return fmt.Errorf("select: %w", err)
	}
	if o.RankBucketRows < 0 || o.RankBucketRows > MaxRankBucketRows {
		return fmt.Errorf("select: rank bucket rows %d: want 1..%d (0: %d)", o.RankBucketRows, MaxRankBucketRows, filter.DefaultRankBucketRows)
	}
	switch o.Gate {
	case "", GateNone, GateLeaveOut:
		if o.Anchor != "" {
			return fmt.Errorf("select: anchor %q needs gate %q", o.Anchor, GateAnchor)
		}
	case GateAnchor:
		if o.Anchor == "" {
			return fmt.Errorf("select: gate %q needs anchor sketch files", GateAnchor)
		}
	default:
		return fmt.Errorf("select: gate %q: want %s, %s or %s", o.Gate, GateNone, GateLeaveOut, GateAnchor)
	}
	if o.Gate == "" {
		o.Gate = GateNone
	}
	if o.GroupSize < 0 || o.GroupSize == 1 {
		return fmt.Errorf("select: group size %d: want 0 (pair scoring) or >= 2", o.GroupSize)
	}
	if err := o.validateSettings(); err != nil {
		return err
	}
	if o.Gate != GateNone && o.Aggregate == aggregate.EMA {
		return fmt.Errorf("select: gate %q needs aggregate mean: its interval resamples the pairs' mean", o.Gate)
	}
	return nil
}

// method returns the filter's method options and whether the method passes
// (a gate or group scoring) replace the pair filter's scoring.
func (o SelectOptions) method(files filter.FileOptions) (filter.Method, bool) {
	m := filter.Method{GroupSize: o.GroupSize, Seed: o.Seed, Files: files, GroupsHeld: o.groupsHeld, Boot: o.boot(),
		SpillDir: o.spillDir}
	switch o.Gate {
	case GateLeaveOut:
		m.Gate = filter.GateLeaveOut
	case GateAnchor:
		m.Gate = filter.GateAnchor
	}
	return m, m.Gate != "" || m.GroupSize > 0
}

// Audited reports whether a method option of issue 13 is in use (the
// noise-aware rule, a gate, group scoring): the decisions then carry the
// audit columns and report.json the audit fields. Under the defaults the
// outputs are those of the paper's pair filter, byte for byte.
func (o SelectOptions) Audited() bool {
	return o.Keep.Rule == filter.NoiseAware || (o.Gate != "" && o.Gate != GateNone) || o.GroupSize > 0
}

func (o SelectOptions) aggregate() aggregate.Options {
	return aggregate.Options{Method: o.Aggregate, Gamma: o.Gamma, K: o.Spec.K, Seed: o.Seed}
}

// Selected is what Select produces. Accounting: every pair is in exactly
// one of Kept, Dropped or DeadPairs; every sketch row is in exactly one of
// Scored, Unscorable or DeadSketches.
type Selected struct {
	Kept         beam.PCollection // PCollection<schemas.Pair>: the filtered pairs D'_t
	Dropped      beam.PCollection // PCollection<schemas.Dropped>: the pair with its score, rank and reason
	Decisions    beam.PCollection // PCollection<schemas.Decision>: one per kept or dropped pair
	Dead         beam.PCollection // PCollection<schemas.DeadLetter>: DeadPairs and the dead sketch rows
	DeadPairs    beam.PCollection // PCollection<schemas.DeadLetter>: pairs that were neither kept nor dropped
	DeadSketches beam.PCollection // PCollection<filter.Failure>: sketch rows rejected before aggregation
	SketchesIn   beam.PCollection // PCollection<filter.Meta>: one per sketch row read
	Scored       beam.PCollection // PCollection<keep.Scored>: admitted sketches with a score
	Unscorable   beam.PCollection // PCollection<filter.Failure>: admitted sketches that could not be scored
	Consensus    beam.PCollection // singleton PCollection<aggregate.Consensus>
	Stats        beam.PCollection // PCollection<filter.Stats>, one per language
	// Plan is the method options' plan (singleton PCollection<filter.Plan>:
	// each language's target and gate verdict); invalid under the pair
	// filter's defaults.
	Plan beam.PCollection

	// The block path (pairs and sketches from files) counts rows per
	// language from its blocks (PCollection<filter.LangCount>, partial
	// counts): pairsIn, sketchesIn, and scoredN where Scored is invalid.
	// SketchesIn is invalid there, Scored too under the default method.
	pairsIn, sketchesIn, scoredN beam.PCollection
}

// addLangCounts counts (stage, outcome) per language from partial
// LangCounts when counts is valid, else the rows of col (Add).
func (c *Counter) addLangCounts(stage, outcome string, counts, col beam.PCollection) {
	if !counts.IsValid() {
		c.Add(stage, outcome, col)
		return
	}
	s := c.s.Scope(stage + "/" + outcome)
	keyed := beam.ParDo(s, &langCountKeyFn{Stage: stage, Outcome: outcome}, counts)
	c.parts = append(c.parts, beam.ParDo(s, toCount64, beam.CombinePerKey(s, sumCounts, keyed)))
}

// langCountKeyFn keys a partial count as countKeyFn keys a row ("*" for no
// language) and adds it to the progress counters, as progress.Tap would.
type langCountKeyFn struct{ Stage, Outcome string }

func (f *langCountKeyFn) ProcessElement(ctx context.Context, lc filter.LangCount) (string, int64) {
	name := f.Stage + "/" + f.Outcome
	progress.Add(name, lc.N)
	beam.NewCounter("congrad.progress", name).Inc(ctx, lc.N)
	lang := lc.Lang
	if lang == "" {
		lang = "*"
	}
	return f.Stage + "\x00" + lang + "\x00" + f.Outcome, lc.N
}

func sumCounts(a, b int64) int64 { return a + b }

func toCount64(key string, n int64) report.Count { return toCount(key, int(n)) }

// Select runs ConGrad's selection on pairs and their sketches:
// validate sketches against pairs -> per-language directions -> PCGrad
// consensus -> score and rank -> join back onto the pairs.
//
// sketches is either PCollection<schemas.Sketch> or the splits of sketch
// files (PCollection<lakeio.Split>, see SketchFiles). With files, no sketch
// vector crosses a stage boundary: the files are read three times (the
// small columns to validate, then all columns to aggregate, then to score),
// so memory is O(L·k + one batch) plus small per-pair rows, whatever N.
//
//	PCollection<schemas.Pair>, PCollection<schemas.Sketch | lakeio.Split> -> Selected
func Select(s beam.Scope, pairs, sketches beam.PCollection, opts SelectOptions) (Selected, error) {
	return selectWithFailures(s, pairs, sketches, beam.PCollection{}, opts)
}

// SketchFiles lists the sketch files of glob for Select, checking their
// columns, k and spec against opts when the pipeline starts.
//
//	PCollection<lakeio.Split>
func SketchFiles(s beam.Scope, glob string, opts SelectOptions) (beam.PCollection, error) {
	return lakeio.Splits(s.Scope("congrad.SketchFiles"), glob, reflect.TypeOf(schemas.Sketch{}),
		lakeio.ReadOptions{SketchK: opts.Spec.K, SketchSpec: opts.Spec.String()})
}

// selectWithFailures is Select with failures from an upstream stage
// (PCollection<filter.Failure>; invalid PCollection for none).
func selectWithFailures(s beam.Scope, pairs, sketches, upstream beam.PCollection, opts SelectOptions) (Selected, error) {
	s = s.Scope("congrad.Select")
	if err := opts.Validate(); err != nil {
		return Selected{}, err
	}
	fromFiles := false
	switch t := sketches.Type().Type(); t {
	case reflect.TypeOf(schemas.Sketch{}):
	case reflect.TypeOf(lakeio.Split{}):
		fromFiles = true
	default:
		return Selected{}, fmt.Errorf("select: sketches must be PCollection<schemas.Sketch> or PCollection<lakeio.Split>, got %v", t)
	}
	switch t := pairs.Type().Type(); {
	case t == reflect.TypeOf(lakeio.Split{}) && fromFiles:
		return selectBlocks(s, pairs, sketches, upstream, opts)
	case t != reflect.TypeOf(schemas.Pair{}):
		return Selected{}, fmt.Errorf("select: pairs must be PCollection<schemas.Pair> (or PCollection<lakeio.Split> of pair files with sketch files), got %v", t)
	}
	ao := opts.aggregate()
	fo := filter.Options{Keep: opts.Keep, Audit: opts.Audited(), Noise: opts.noise(), RankBucketRows: opts.RankBucketRows}
	files := filter.FileOptions{K: opts.Spec.K, Spec: opts.Spec.String()}
	m, method := opts.method(files)
	anchor, err := opts.anchorOf(s, files, method)
	if err != nil {
		return Selected{}, err
	}
	var metas, checkFails, scored, unscorable, cons, plan beam.PCollection
	var val filter.Validation
	if fromFiles {
		metas = filter.MetasOfFiles(s, sketches)
		val = filter.Validate(s, pairs, metas, upstream)
		var partials beam.PCollection
		partials, checkFails = filter.AggregateFiles(s, sketches, val.Excluded, files, ao)
		dirs := aggregate.FromPartials(s, partials, ao)
		cons = aggregate.ConsensusOf(s, dirs, ao)
		if !method {
			scored, unscorable = filter.ScoreFiles(s, sketches, val.Excluded, cons, files)
		} else {
			plan, scored, unscorable = scoreMethodFiles(s, sketches, val.Excluded, dirs, cons, partials, anchor, m, files)
		}
	} else {
		metas = filter.MetasOf(s, sketches)
		val = filter.Validate(s, pairs, metas, upstream)
		var valid beam.PCollection
		valid, checkFails = filter.Admit(s, sketches, val.Excluded, opts.Spec.K)
		dirs := aggregate.PerLanguage(s, valid, ao)
		cons = aggregate.ConsensusOf(s, dirs, ao)
		if !method {
			scored, unscorable = filter.Score(s, valid, cons)
		} else {
			dl := filter.CollectDirs(s, dirs)
			boots := beam.CreateList(s, []filter.LangBoot{})
			if m.Gate != "" {
				boots = filter.GateBoots(s, valid, filter.GateRefsOf(s, dl, anchor, m), m)
			}
			plan = filter.PlanOf(s, dl, cons, boots, anchor, m)
			if m.GroupSize > 0 {
				members, parts := filter.Group(s, valid, filter.CountSketches(s, valid), m)
				scored, unscorable = filter.JoinGroups(s, members, filter.GroupScores(s, parts, plan))
			} else {
				scored, unscorable = filter.ScorePlan(s, valid, plan)
			}
		}
	}
	var verdicts, stats beam.PCollection
	if method {
		verdicts, stats = filter.RankPlan(s, scored, plan, fo)
	} else {
		verdicts, stats = filter.Rank(s, scored, fo)
	}
	fails := []beam.PCollection{val.PairFailures, checkFails, unscorable}
	if upstream.IsValid() {
		fails = append(fails, upstream)
	}
	out := filter.Split(s, pairs, verdicts, beam.Flatten(s, fails...), val.Refs)
	deadSketches := beam.Flatten(s, val.DeadSketches, checkFails)
	return Selected{Kept: out.Kept, Dropped: out.Dropped, Decisions: out.Decisions,
		Dead:      beam.Flatten(s, out.Dead, filter.DeadSketchRows(s, deadSketches)),
		DeadPairs: out.Dead, DeadSketches: deadSketches, SketchesIn: metas, Scored: scored, Unscorable: unscorable,
		Consensus: cons, Stats: stats, Plan: plan}, nil
}

// anchorOf is the anchor's directions for the method path (an empty list
// unless --gate=anchor); nil when the method options are not in use.
func (o SelectOptions) anchorOf(s beam.Scope, files filter.FileOptions, method bool) (beam.PCollection, error) {
	if !method {
		return beam.PCollection{}, nil
	}
	if o.Gate == GateAnchor {
		return o.anchorDirs(s, files)
	}
	return beam.CreateList(s, []filter.DirList{}), nil
}

// scoreMethodFiles scores the sketch files under the method options: the
// plan (gates, consensus, noise fits), then pair or group scores.
func scoreMethodFiles(s beam.Scope, sketches, excluded, dirs, cons, partials, anchor beam.PCollection,
	m filter.Method, files filter.FileOptions) (plan, scored, unscorable beam.PCollection) {
	dl := filter.CollectDirs(s, dirs)
	boots := beam.CreateList(s, []filter.LangBoot{})
	if m.Gate != "" {
		boots = filter.GateBootsFiles(s, sketches, excluded, filter.GateRefsOf(s, dl, anchor, m), m)
	}
	plan = filter.PlanOf(s, dl, cons, boots, anchor, m)
	if m.GroupSize > 0 {
		members, parts := filter.GroupFiles(s, sketches, excluded, filter.CountPartials(s, partials), m)
		scored, unscorable = filter.JoinGroups(s, members, filter.GroupScores(s, parts, plan))
	} else {
		scored, unscorable = filter.ScorePlanFiles(s, sketches, excluded, plan, files)
	}
	return plan, scored, unscorable
}

// PairFiles lists the pair files of glob for Select (PCollection<lakeio.Split>):
// with SketchFiles, Select reads both sides from files in blocks (see
// selectBlocks).
func PairFiles(s beam.Scope, glob string) (beam.PCollection, error) {
	return filter.PairFiles(s.Scope("congrad.PairFiles"), glob)
}

// selectBlocks is Select with pairs and sketches both read from files
// (filter's block path, blocks.go): the pair files are read twice (ids and
// languages to validate; whole rows to join with the decisions), the
// sketch files three times as in the file path, and no stage boundary
// carries one element per pair. The outputs are those of the per-element
// path, row for row.
func selectBlocks(s beam.Scope, pairSplits, sketches, upstream beam.PCollection, opts SelectOptions) (Selected, error) {
	ao := opts.aggregate()
	fo := filter.Options{Keep: opts.Keep, Audit: opts.Audited(), Noise: opts.noise(), RankBucketRows: opts.RankBucketRows}
	files := filter.FileOptions{K: opts.Spec.K, Spec: opts.Spec.String()}
	m, method := opts.method(files)
	anchor, err := opts.anchorOf(s, files, method)
	if err != nil {
		return Selected{}, err
	}
	pairKeys, pairsIn := filter.PairKeysFiles(s, pairSplits)
	metas, sketchesIn := filter.MetaBlocksFiles(s, sketches)
	val := filter.ValidateBlocks(s, pairKeys, metas, upstream)
	partials, checkFails := filter.AggregateFiles(s, sketches, val.Excluded, files, ao)
	dirs := aggregate.FromPartials(s, partials, ao)
	cons := aggregate.ConsensusOf(s, dirs, ao)
	var decisions, stats, unscorable, plan, scored, scoredN beam.PCollection
	if !method {
		var blocks beam.PCollection
		blocks, unscorable = filter.ScoreFilesBlocks(s, sketches, val.Excluded, cons, files)
		scoredN = filter.ScoreBlockCounts(s, blocks)
		decisions, stats = filter.RankBlocks(s, blocks, fo)
	} else {
		plan, scored, unscorable = scoreMethodFiles(s, sketches, val.Excluded, dirs, cons, partials, anchor, m, files)
		var verdicts beam.PCollection
		verdicts, stats = filter.RankPlan(s, scored, plan, fo)
		decisions = filter.DecisionBlocks(s, verdicts)
	}
	fails := []beam.PCollection{val.PairFailures, checkFails, unscorable, val.DupPairs}
	if upstream.IsValid() {
		fails = append(fails, upstream)
	}
	out := filter.SplitFiles(s, pairSplits, pairKeys, decisions, beam.Flatten(s, fails...), val.Refs)
	deadPairs := beam.Flatten(s, out.Dead, val.Orphans)
	deadSketches := beam.Flatten(s, val.DeadSketches, checkFails)
	return Selected{Kept: out.Kept, Dropped: out.Dropped, Decisions: out.Decisions,
		Dead:      beam.Flatten(s, deadPairs, filter.DeadSketchRows(s, deadSketches)),
		DeadPairs: deadPairs, DeadSketches: deadSketches, Scored: scored, Unscorable: unscorable,
		Consensus: cons, Stats: stats, Plan: plan,
		pairsIn: pairsIn, sketchesIn: sketchesIn, scoredN: scoredN}, nil
}

// count adds the select stage's accounting to cnt: pairs_in = kept +
// dropped + dead (pairs), and sketches_in = sketches_scored +
// sketches_unscorable + sketches_dead, each per language. On the block
// path the per-pair rows are counted from the blocks' LangCounts.
func (sel Selected) count(cnt *Counter, stage string, pairs beam.PCollection) {
	cnt.addLangCounts(stage, "pairs_in", sel.pairsIn, pairs)
	cnt.Add(stage, "kept", sel.Kept)
	cnt.Add(stage, "dropped", sel.Dropped)
	cnt.Add(stage, "dead", sel.DeadPairs)
	cnt.addLangCounts(stage, "sketches_in", sel.sketchesIn, sel.SketchesIn)
	cnt.addLangCounts(stage, "sketches_scored", sel.scoredN, sel.Scored)
	cnt.Add(stage, "sketches_unscorable", sel.Unscorable)
	cnt.Add(stage, "sketches_dead", sel.DeadSketches)
}
