package filter

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/congrad-beam/congrad/internal/beamiter"
	"github.com/congrad-beam/congrad/schemas"
)

// Dead-letter reason kinds of the filter: every reason it writes starts
// with one of these, then ": " and the detail, so the report can group
// them (see pipelines.Reasons).
const (
	KindOrphan        = "orphan_sketch"    // a sketch whose pair_id has no pair
	KindDuplicate     = "duplicate_sketch" // several sketches share one pair_id
	KindDuplicatePair = "duplicate_pair"   // several pairs share one pair_id
	KindLangMismatch  = "lang_mismatch"    // sketch and pair disagree on the language
	KindInvalid       = "invalid_sketch"   // wrong k, non-finite, zero, no id or language
	KindNoSketch      = "no_sketch"        // a pair without any sketch
	KindUpstream      = "upstream"         // the pair failed in an earlier stage
	KindUnscorable    = "unscorable"       // no usable consensus, or a non-finite score
	KindPairDead      = "pair_dead_letter" // a sketch whose pair is dead for another reason
	kindSep           = ": "
)

func reason(kind, format string, a ...any) string {
	return kind + kindSep + fmt.Sprintf(format, a...)
}

// Meta is the small part of a sketch that validation and the join need:
// sketches are validated against pairs on these rows, never on the vectors.
type Meta struct {
	PairID          string
	Lang            string
	RefChosenLogp   float64
	RefRejectedLogp float64
}

// MetaOf extracts Meta from a sketch.
func MetaOf(sk schemas.Sketch) Meta {
	return Meta{PairID: sk.PairID, Lang: sk.Lang, RefChosenLogp: sk.RefChosenLogp, RefRejectedLogp: sk.RefRejectedLogp}
}

// pairKey is what validation needs of a pair.
type pairKey struct {
	PairID string
	Lang   string
}

// Validation is what Validate produces.
type Validation struct {
	// Excluded holds the pair ids whose sketches must not be aggregated or
	// scored (PCollection<string>, for use as a side input). Only bad ids are
	// listed, so it is as small as the input is clean.
	Excluded beam.PCollection
	// DeadSketches are the sketch rows that validation rejects, one per row
	// (PCollection<Failure>, Lang = the sketch's language).
	DeadSketches beam.PCollection
	// PairFailures are the pairs that lose their sketch to validation
	// (PCollection<Failure>), for Split.
	PairFailures beam.PCollection
	// Refs are the reference log-probs of the valid sketches (PCollection<Refs>).
	Refs beam.PCollection
}

// Validate joins sketch metadata with the pairs by pair id, before anything
// aggregates the sketches. A sketch is valid when exactly one pair and
// exactly one sketch carry its id, the languages agree and the pair did not
// fail upstream (upstream: PCollection<Failure>, or an invalid PCollection
// for none). Every other sketch row becomes one dead sketch row with its
// reason, and its id is excluded from G_l, g* and the ranking.
//
//	PCollection<schemas.Pair>, PCollection<Meta>, PCollection<Failure> -> Validation
func Validate(s beam.Scope, pairs, metas, upstream beam.PCollection) Validation {
	s = s.Scope("filter.Validate")
	mustType("filter.Validate", pairs, reflect.TypeOf(schemas.Pair{}))
	mustType("filter.Validate", metas, reflect.TypeOf(Meta{}))
	if !upstream.IsValid() {
		upstream = beam.CreateList(s, []Failure{})
	}
	mustType("filter.Validate", upstream, reflect.TypeOf(Failure{}))
	g := beam.CoGroupByKey(s,
		beam.ParDo(s, keyPairLang, pairs),
		beam.ParDo(s, keyMeta, metas),
		beam.ParDo(s, keyFailure, upstream))
	ex, dead, fails, refs := beam.ParDo4(s, &validateFn{}, g)
	return Validation{Excluded: ex, DeadSketches: dead, PairFailures: fails, Refs: refs}
}

func keyPairLang(p schemas.Pair) (string, pairKey) {
	return p.PairID, pairKey{PairID: p.PairID, Lang: p.Lang}
}
func keyMeta(m Meta) (string, Meta) { return m.PairID, m }

type validateFn struct{}

func (f *validateFn) ProcessElement(id string, pairsIt func(*pairKey) bool, metasIt func(*Meta) bool, upIt func(*Failure) bool,
	excluded func(string), deadSketch func(Failure), pairFail func(Failure), refs func(Refs)) {
	ms := beamiter.Drain(metasIt)
	if len(ms) == 0 {
		return // a pair without sketch: Split dead-letters it
	}
	ps, up := beamiter.Drain(pairsIt), beamiter.Drain(upIt)
	rejectAll := func(r string) {
		excluded(id)
		for _, m := range ms {
			deadSketch(Failure{PairID: id, Lang: m.Lang, Reason: r})
		}
	}
	switch {
	case id == "":
		rejectAll(reason(KindInvalid, "sketch without pair_id"))
	case len(ps) == 0:
		rejectAll(reason(KindOrphan, "no pair with this pair_id"))
	case len(ms) > 1:
		r := reason(KindDuplicate, "%d sketches share this pair_id", len(ms))
		rejectAll(r)
		if len(ps) == 1 {
			pairFail(Failure{PairID: id, Lang: ps[0].Lang, Reason: r})
		}
	case len(ps) > 1:
		rejectAll(reason(KindPairDead, "%d pairs share this pair_id", len(ps)))
	case len(up) > 0:
		rejectAll(reason(KindPairDead, "the pair failed upstream"))
	case ms[0].Lang != ps[0].Lang:
		r := reason(KindLangMismatch, "sketch language %q differs from pair language %q", ms[0].Lang, ps[0].Lang)
		rejectAll(r)
		pairFail(Failure{PairID: id, Lang: ps[0].Lang, Reason: r})
	default:
		if m := ms[0]; !math.IsNaN(m.RefChosenLogp) {
			refs(Refs{PairID: id, RefChosenLogp: m.RefChosenLogp, RefRejectedLogp: m.RefRejectedLogp})
		}
	}
}

// DeadSketchRows turns rejected sketch rows into dead letters.
//
//	PCollection<Failure> -> PCollection<schemas.DeadLetter>
func DeadSketchRows(s beam.Scope, dead beam.PCollection) beam.PCollection {
	s = s.Scope("filter.DeadSketchRows")
	mustType("filter.DeadSketchRows", dead, reflect.TypeOf(Failure{}))
	return beam.ParDo(s, toDeadSketch, dead)
}

func toDeadSketch(f Failure) schemas.DeadLetter {
	b, _ := json.Marshal(map[string]string{"row": "sketch", "pair_id": f.PairID, "lang": f.Lang})
	return schemas.DeadLetter{Stage: Stage, Source: f.PairID, Row: -1, Reason: f.Reason, Payload: string(b)}
}

func registerValidate() {
	register.Function1x2(keyPairLang)
	register.Function1x2(keyMeta)
	register.Function1x1(toDeadSketch)
	register.Function1x1(MetaOf)
	register.DoFn8x0[string, func(*pairKey) bool, func(*Meta) bool, func(*Failure) bool,
		func(string), func(Failure), func(Failure), func(Refs)](&validateFn{})
	register.Iter1[*pairKey]()
	register.Iter1[*Meta]()
	register.Emitter1[string]()
	register.Emitter1[Refs]()
	beam.RegisterType(reflect.TypeOf(Meta{}))
	beam.RegisterType(reflect.TypeOf(pairKey{}))
}
