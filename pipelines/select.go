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

// Selected is what Select produces.
type Selected struct {
	Kept      beam.PCollection // PCollection<schemas.Pair>: the filtered pairs D'_t
	Dropped   beam.PCollection // PCollection<schemas.Pair>
	Decisions beam.PCollection // PCollection<schemas.Decision>: one per kept or dropped pair
	Dead      beam.PCollection // PCollection<schemas.DeadLetter>
	Consensus beam.PCollection // singleton PCollection<aggregate.Consensus>
	Stats     beam.PCollection // PCollection<filter.Stats>, one per language
}

// Select runs ConGrad's selection on pairs and their sketches:
// check -> per-language directions -> PCGrad consensus -> score and rank ->
// join back onto the pairs.
//
//	PCollection<schemas.Pair>, PCollection<schemas.Sketch> -> Selected
func Select(s beam.Scope, pairs, sketches beam.PCollection, opts SelectOptions) (Selected, error) {
	return selectWithFailures(s, pairs, sketches, beam.PCollection{}, opts)
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
	if t := sketches.Type().Type(); t != reflect.TypeOf(schemas.Sketch{}) {
		return Selected{}, fmt.Errorf("select: sketches must be PCollection<schemas.Sketch>, got %v", t)
	}
	ao := opts.aggregate()
	valid, bad := filter.Check(s, sketches, opts.Spec.K)
	dirs := aggregate.PerLanguage(s, valid, ao)
	cons := aggregate.ConsensusOf(s, dirs, ao)
	res := filter.Conflicts(s, valid, cons, filter.Options{Keep: opts.Keep})
	fails := []beam.PCollection{bad, res.Failures}
	if upstream.IsValid() {
		fails = append(fails, upstream)
	}
	out := filter.Split(s, pairs, res.Verdicts, beam.Flatten(s, fails...), filter.RefsOf(s, valid))
	return Selected{Kept: out.Kept, Dropped: out.Dropped, Decisions: out.Decisions, Dead: out.Dead,
		Consensus: cons, Stats: res.Stats}, nil
}
