package filter

import (
	"context"
	"fmt"
	"reflect"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/congrad-beam/congrad/congrad/accum"
	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/internal/beamiter"
	"github.com/congrad-beam/congrad/internal/sideinput"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/transforms/aggregate"
	"github.com/congrad-beam/congrad/transforms/lakeio"
)

// BatchRows is the number of sketch rows decoded at a time when reading
// sketch files (8 MB of values at k=2048).
const BatchRows = 1024

// excludedSet is the side input of excluded pair ids, read once per DoFn
// instance: it is the same for the whole run.
type excludedSet struct{ m map[string]bool }

func (e *excludedSet) has(id string, it func(*string) bool) bool {
	if e.m == nil {
		e.m = map[string]bool{}
		var s string
		for it(&s) {
			e.m[s] = true
		}
	}
	return e.m[id]
}

// Admit drops the sketches of excluded pair ids (validation has dead-lettered
// them already) and checks the others (see Check).
//
//	PCollection<schemas.Sketch>, PCollection<string> -> (PCollection<schemas.Sketch>, PCollection<Failure>)
func Admit(s beam.Scope, sketches, excluded beam.PCollection, k int) (valid, failed beam.PCollection) {
	s = s.Scope("filter.Admit")
	mustType("filter.Admit", sketches, reflect.TypeOf(schemas.Sketch{}))
	mustType("filter.Admit", excluded, reflect.TypeOf(""))
	return beam.ParDo2(s, &admitFn{K: k}, sketches, sideinput.Read(s, excluded))
}

type admitFn struct {
	K  int
	ex excludedSet
}

func (f *admitFn) ProcessElement(sk schemas.Sketch, excluded func(*string) bool, ok func(schemas.Sketch), bad func(Failure)) {
	if f.ex.has(sk.PairID, excluded) {
		return
	}
	if r := checkSketch(sk, f.K); r != "" {
		bad(Failure{PairID: sk.PairID, Lang: sk.Lang, Reason: r})
		return
	}
	ok(sk)
}

// MetasOf extracts Meta rows from sketches.
//
//	PCollection<schemas.Sketch> -> PCollection<Meta>
func MetasOf(s beam.Scope, sketches beam.PCollection) beam.PCollection {
	s = s.Scope("filter.MetasOf")
	mustType("filter.MetasOf", sketches, reflect.TypeOf(schemas.Sketch{}))
	return beam.ParDo(s, MetaOf, sketches)
}

// FileOptions say how to decode sketch files.
type FileOptions struct {
	K    int    // every sketch must have K values
	Spec string // the files' sketch spec ("" accepts any)
}

// MetasOfFiles reads the Meta columns (pair_id, lang, reference log-probs)
// of sketch file splits; the values column is not read.
//
//	PCollection<lakeio.Split> -> PCollection<Meta>
func MetasOfFiles(s beam.Scope, splits beam.PCollection) beam.PCollection {
	s = s.Scope("filter.MetasOfFiles")
	mustType("filter.MetasOfFiles", splits, reflect.TypeOf(lakeio.Split{}))
	return beam.ParDo(s, &metaSplitFn{}, splits)
}

type metaSplitFn struct{}

var metaCols = []string{"pair_id", "lang", "ref_chosen_logps", "ref_rejected_logps"}

type stringCol interface{ Value(int) string }

func (f *metaSplitFn) ProcessElement(ctx context.Context, sp lakeio.Split, emit func(Meta)) error {
	return eachMeta(ctx, sp, emit)
}

// eachSketch decodes the sketches of a split, BatchRows at a time. The
// values are not copied out of the batch: sk.Values is valid only during
// fn's call (every pass reads them once and keeps sums or scores).
func eachSketch(ctx context.Context, sp lakeio.Split, o FileOptions, fn func(schemas.Sketch) error) error {
	codec := schemas.SketchCodec{K: o.K, Spec: o.Spec}
	return lakeio.EachBatch(ctx, sp, nil, BatchRows, func(rec arrow.RecordBatch) error {
		sks, err := codec.DecodeView(rec)
		if err != nil {
			return fmt.Errorf("filter: %s: %w", sp.Path, err)
		}
		for _, sk := range sks {
			if err := fn(sk); err != nil {
				return err
			}
		}
		return nil
	})
}

// AggregateFiles is the first pass over sketch files: it reads every split,
// skips excluded ids, checks the rest (failures out) and adds them into one
// exact accumulator per language (per language and step for ema), emitted
// once per split. Nothing per sketch leaves the worker.
//
//	PCollection<lakeio.Split>, PCollection<string> -> (PCollection<KV<string, accum.Mean>>, PCollection<Failure>)
func AggregateFiles(s beam.Scope, splits, excluded beam.PCollection, o FileOptions, agg aggregate.Options) (partials, failed beam.PCollection) {
	s = s.Scope("filter.AggregateFiles")
	mustType("filter.AggregateFiles", splits, reflect.TypeOf(lakeio.Split{}))
	if err := agg.Validate(); err != nil {
		panic(err)
	}
	return beam.ParDo2(s, &aggSplitFn{Files: o, Method: agg.Method, Gamma: agg.Gamma}, bindSplits(s, splits, excluded, beam.PCollection{}))
}

type aggSplitFn struct {
	Files  FileOptions
	Method string
	Gamma  float64
}

func (f *aggSplitFn) ProcessElement(ctx context.Context, b BoundSplit, emit func(string, accum.Mean), bad func(Failure)) error {
	p := aggregate.NewPartials(aggregate.Options{Method: f.Method, Gamma: f.Gamma, K: f.Files.K})
	ex := b.excludedOf()
	err := eachSketch(ctx, b.Split, f.Files, func(sk schemas.Sketch) error {
		if ex[sk.PairID] {
			return nil
		}
		if r := checkSketch(sk, f.Files.K); r != "" {
			bad(Failure{PairID: sk.PairID, Lang: sk.Lang, Reason: r})
			return nil
		}
		return p.AddFinite(sk.Lang, sk.Step, sk.Values) // checkSketch checked
	})
	if err != nil {
		return err
	}
	p.Flush(emit)
	return nil
}

// ScoreFiles is the second pass over sketch files: cos(s_i, g*) of every
// admitted sketch (excluded ids and sketches that fail Check are skipped:
// AggregateFiles reported them), emitting only (pair id, language, score).
//
//	PCollection<lakeio.Split>, PCollection<string>, singleton PCollection<aggregate.Consensus>
//	  -> (PCollection<keep.Scored>, PCollection<Failure>)
func ScoreFiles(s beam.Scope, splits, excluded, consensus beam.PCollection, o FileOptions) (scored, failed beam.PCollection) {
	s = s.Scope("filter.ScoreFiles")
	mustType("filter.ScoreFiles", splits, reflect.TypeOf(lakeio.Split{}))
	mustType("filter.ScoreFiles", consensus, reflect.TypeOf(aggregate.Consensus{}))
	return beam.ParDo2(s, &scoreSplitFn{Files: o}, bindSplits(s, splits, excluded, consensus))
}

type scoreSplitFn struct {
	Files FileOptions
}

func (f *scoreSplitFn) ProcessElement(ctx context.Context, b BoundSplit, ok func(keep.Scored), bad func(Failure)) error {
	ex, cons := b.excludedOf(), beamiter.Of(b.Cons)
	var sc scorer
	return eachSketch(ctx, b.Split, f.Files, func(sk schemas.Sketch) error {
		if ex[sk.PairID] || checkSketch(sk, f.Files.K) != "" {
			return nil
		}
		sc.score(sk, cons, ok, bad)
		return nil
	})
}

func registerFiles() {
	register.DoFn4x0[schemas.Sketch, func(*string) bool, func(schemas.Sketch), func(Failure)](&admitFn{})
	register.DoFn3x1[context.Context, lakeio.Split, func(Meta), error](&metaSplitFn{})
	register.DoFn4x1[context.Context, BoundSplit, func(string, accum.Mean), func(Failure), error](&aggSplitFn{})
	register.DoFn4x1[context.Context, BoundSplit, func(keep.Scored), func(Failure), error](&scoreSplitFn{})
	register.Iter1[*string]()
	register.Emitter1[Meta]()
	register.Emitter2[string, accum.Mean]()
}
