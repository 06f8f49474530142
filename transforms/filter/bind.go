package filter

import (
	"reflect"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/congrad-beam/congrad/internal/beamiter"
	"github.com/congrad-beam/congrad/internal/sideinput"
	"github.com/congrad-beam/congrad/transforms/aggregate"
	"github.com/congrad-beam/congrad/transforms/lakeio"
)

// The heavy passes over sketch files (aggregation, scoring, and the method
// options' gate bootstrap, plan scoring and grouping) need small side data:
// the excluded pair ids and, to score, the consensus (or the plan, the gate
// references, the per-language counts). Taking them as
// Beam side inputs would be the natural wiring, but on Prism (Beam v2.77) a
// stage with side inputs keeps the runner's scheduling loop spinning for as
// long as one of its bundles runs: its readiness check passes with nothing
// pending, and an ordinary stage is always rescheduled. Counted with a
// patched runner on a 100k x 2048 select: about 1.7 million empty
// reschedules in these two stages, some 4-5 s of a 22 s CPU run
// (docs/perf/select.md). So the side data is bound into the split elements
// by a stage that does nothing else (microseconds), a Reshuffle keeps that
// stage from fusing with the read, and the read runs in a stage without
// side inputs. Runners without the spin pay one small shuffle of a few
// split elements.

// BoundSplit is one sketch-file split with the side data of its pass.
type BoundSplit struct {
	Split    lakeio.Split
	Excluded []string              // pair ids not to aggregate or score (Validation.Excluded)
	Cons     []aggregate.Consensus // the consensus to score against (one), or none to aggregate
	// The method options' passes (method.go) bind one of these instead.
	Plan   []Plan      // ScorePlanFiles: the plan (one)
	Refs   []GateRefs  // GateBootsFiles: the gate references (one)
	Counts []LangCount // GroupFiles: sketches per language
}

// bindSplits binds excluded (PCollection<string>) and, when valid, the
// singleton consensus into every split, and breaks fusion after it.
//
//	PCollection<lakeio.Split> -> PCollection<BoundSplit>
func bindSplits(s beam.Scope, splits, excluded, consensus beam.PCollection) beam.PCollection {
	s = s.Scope("bind")
	var bound beam.PCollection
	if consensus.IsValid() {
		bound = beam.ParDo(s, bindConsFn, splits, sideinput.Read(s, excluded), sideinput.Read(s, consensus))
	} else {
		bound = beam.ParDo(s, bindFn, splits, sideinput.Read(s, excluded))
	}
	return beam.Reshuffle(s, bound)
}

// bindSplitsWith is bindSplits for the method passes: bind is one of
// bindPlanFn, bindRefsFn, bindCountsFn, taking side as its second side input.
func bindSplitsWith(s beam.Scope, splits, excluded, side beam.PCollection, bind any) beam.PCollection {
	s = s.Scope("bind")
	return beam.Reshuffle(s, beam.ParDo(s, bind, splits, sideinput.Read(s, excluded), sideinput.Read(s, side)))
}

func bindPlanFn(sp lakeio.Split, excluded func(*string) bool, plan func(*Plan) bool) BoundSplit {
	return BoundSplit{Split: sp, Excluded: beamiter.Drain(excluded), Plan: beamiter.Drain(plan)}
}

func bindRefsFn(sp lakeio.Split, excluded func(*string) bool, refs func(*GateRefs) bool) BoundSplit {
	return BoundSplit{Split: sp, Excluded: beamiter.Drain(excluded), Refs: beamiter.Drain(refs)}
}

func bindCountsFn(sp lakeio.Split, excluded func(*string) bool, counts func(*LangCount) bool) BoundSplit {
	return BoundSplit{Split: sp, Excluded: beamiter.Drain(excluded), Counts: beamiter.Drain(counts)}
}

func bindFn(sp lakeio.Split, excluded func(*string) bool) BoundSplit {
	return BoundSplit{Split: sp, Excluded: beamiter.Drain(excluded)}
}

func bindConsFn(sp lakeio.Split, excluded func(*string) bool, cons func(*aggregate.Consensus) bool) BoundSplit {
	b := BoundSplit{Split: sp, Excluded: beamiter.Drain(excluded)}
	var c aggregate.Consensus
	if cons(&c) {
		b.Cons = []aggregate.Consensus{c}
	}
	return b
}

// excludedOf is b's excluded ids as a set.
func (b BoundSplit) excludedOf() map[string]bool {
	m := make(map[string]bool, len(b.Excluded))
	for _, id := range b.Excluded {
		m[id] = true
	}
	return m
}

func registerBind() {
	beam.RegisterType(reflect.TypeOf(BoundSplit{}))
	register.Function2x1(bindFn)
	register.Function3x1(bindConsFn)
	register.Function3x1(bindPlanFn)
	register.Function3x1(bindRefsFn)
	register.Function3x1(bindCountsFn)
}
