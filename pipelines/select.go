// Package pipelines builds whole ConGrad pipelines from the transforms:
// Generate (prompts -> pairs), Sketch (pairs -> sketches), Select (pairs +
// sketches -> kept / dropped / decisions / dead letters / report), and Run,
// which chains all three in one pipeline.
package pipelines

import (
	"fmt"
	"reflect"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/transforms/aggregate"
	"github.com/congrad-beam/congrad/transforms/filter"
	"github.com/congrad-beam/congrad/transforms/lakeio"
)

// SelectOptions configure the aggregation and the filter.
type SelectOptions struct {
	Spec      sketch.Spec // the sketches' spec; Spec.K is the dimension every sketch must have
	Aggregate string      // mean | ema
	Gamma     float64     // ema decay
	Seed      uint64      // PCGrad permutation seed
	Keep      keep.Options
}

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
	if err := o.Keep.Validate(); err != nil {
		return fmt.Errorf("select: %w", err)
	}
	return nil
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
}

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
	if t := pairs.Type().Type(); t != reflect.TypeOf(schemas.Pair{}) {
		return Selected{}, fmt.Errorf("select: pairs must be PCollection<schemas.Pair>, got %v", t)
	}
	fromFiles := false
	switch t := sketches.Type().Type(); t {
	case reflect.TypeOf(schemas.Sketch{}):
	case reflect.TypeOf(lakeio.Split{}):
		fromFiles = true
	default:
		return Selected{}, fmt.Errorf("select: sketches must be PCollection<schemas.Sketch> or PCollection<lakeio.Split>, got %v", t)
	}
	ao := opts.aggregate()
	fo := filter.Options{Keep: opts.Keep}
	var metas, checkFails, scored, unscorable, cons beam.PCollection
	var val filter.Validation
	if fromFiles {
		files := filter.FileOptions{K: opts.Spec.K, Spec: opts.Spec.String()}
		metas = filter.MetasOfFiles(s, sketches)
		val = filter.Validate(s, pairs, metas, upstream)
		var partials beam.PCollection
		partials, checkFails = filter.AggregateFiles(s, sketches, val.Excluded, files, ao)
		cons = aggregate.ConsensusOf(s, aggregate.FromPartials(s, partials, ao), ao)
		scored, unscorable = filter.ScoreFiles(s, sketches, val.Excluded, cons, files)
	} else {
		metas = filter.MetasOf(s, sketches)
		val = filter.Validate(s, pairs, metas, upstream)
		var valid beam.PCollection
		valid, checkFails = filter.Admit(s, sketches, val.Excluded, opts.Spec.K)
		cons = aggregate.ConsensusOf(s, aggregate.PerLanguage(s, valid, ao), ao)
		scored, unscorable = filter.Score(s, valid, cons)
	}
	verdicts, stats := filter.Rank(s, scored, fo)
	fails := []beam.PCollection{val.PairFailures, checkFails, unscorable}
	if upstream.IsValid() {
		fails = append(fails, upstream)
	}
	out := filter.Split(s, pairs, verdicts, beam.Flatten(s, fails...), val.Refs)
	deadSketches := beam.Flatten(s, val.DeadSketches, checkFails)
	return Selected{Kept: out.Kept, Dropped: out.Dropped, Decisions: out.Decisions,
		Dead:      beam.Flatten(s, out.Dead, filter.DeadSketchRows(s, deadSketches)),
		DeadPairs: out.Dead, DeadSketches: deadSketches, SketchesIn: metas, Scored: scored, Unscorable: unscorable,
		Consensus: cons, Stats: stats}, nil
}

// count adds the select stage's accounting to cnt: pairs_in = kept +
// dropped + dead (pairs), and sketches_in = sketches_scored +
// sketches_unscorable + sketches_dead, each per language.
func (sel Selected) count(cnt *Counter, stage string, pairs beam.PCollection) {
	cnt.Add(stage, "pairs_in", pairs)
	cnt.Add(stage, "kept", sel.Kept)
	cnt.Add(stage, "dropped", sel.Dropped)
	cnt.Add(stage, "dead", sel.DeadPairs)
	cnt.Add(stage, "sketches_in", sel.SketchesIn)
	cnt.Add(stage, "sketches_scored", sel.Scored)
	cnt.Add(stage, "sketches_unscorable", sel.Unscorable)
	cnt.Add(stage, "sketches_dead", sel.DeadSketches)
}
