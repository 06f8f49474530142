package filter

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/congrad-beam/congrad/internal/beamiter"
	"github.com/congrad-beam/congrad/schemas"
)

// Refs carries a sketch's reference log-probabilities to its pair, so the
// kept pairs hold ref_chosen_logps/ref_rejected_logps (TRL can then skip its
// own reference pass) without shuffling the sketches themselves.
type Refs struct {
	PairID          string
	RefChosenLogp   float64
	RefRejectedLogp float64
}

// RefsOf extracts Refs from sketches.
//
//	PCollection<schemas.Sketch> -> PCollection<Refs>
func RefsOf(s beam.Scope, sketches beam.PCollection) beam.PCollection {
	s = s.Scope("filter.RefsOf")
	mustType("filter.RefsOf", sketches, reflect.TypeOf(schemas.Sketch{}))
	return beam.ParDo(s, refsOf, sketches)
}

func refsOf(sk schemas.Sketch) Refs {
	return Refs{PairID: sk.PairID, RefChosenLogp: sk.RefChosenLogp, RefRejectedLogp: sk.RefRejectedLogp}
}

// SplitResult is where every pair ends up.
type SplitResult struct {
	Kept      beam.PCollection // PCollection<schemas.Pair>
	Dropped   beam.PCollection // PCollection<schemas.Dropped>: the pair with its score, rank and reason
	Decisions beam.PCollection // PCollection<schemas.Decision>, one per kept or dropped pair
	Dead      beam.PCollection // PCollection<schemas.DeadLetter>
}

// Split joins pairs with their verdicts, failures and reference log-probs
// by pair id. Each pair leaves in exactly one of Kept, Dropped or Dead:
// a pair with one verdict is kept or dropped; a pair with a failure, with no
// sketch, with several sketches or a duplicated id is a dead letter with the
// reason. Verdicts or failures without a pair become dead letters too
// (sketch-level rows; Source names the pair id).
//
//	pairs PCollection<schemas.Pair>, verdicts PCollection<schemas.Decision>,
//	failures PCollection<Failure>, refs PCollection<Refs> -> SplitResult
func Split(s beam.Scope, pairs, verdicts, failures, refs beam.PCollection) SplitResult {
	s = s.Scope("filter.Split")
	mustType("filter.Split", pairs, reflect.TypeOf(schemas.Pair{}))
	mustType("filter.Split", verdicts, reflect.TypeOf(schemas.Decision{}))
	mustType("filter.Split", failures, reflect.TypeOf(Failure{}))
	mustType("filter.Split", refs, reflect.TypeOf(Refs{}))
	g := beam.CoGroupByKey(s,
		beam.ParDo(s, keyPair, pairs),
		beam.ParDo(s, keyDecision, verdicts),
		beam.ParDo(s, keyFailure, failures),
		beam.ParDo(s, keyRefs, refs))
	kept, dropped, decisions, dead := beam.ParDo4(s, &splitFn{}, g)
	return SplitResult{Kept: kept, Dropped: dropped, Decisions: decisions, Dead: dead}
}

func keyPair(p schemas.Pair) (string, schemas.Pair)             { return p.PairID, p }
func keyDecision(d schemas.Decision) (string, schemas.Decision) { return d.PairID, d }
func keyFailure(f Failure) (string, Failure)                    { return f.PairID, f }
func keyRefs(r Refs) (string, Refs)                             { return r.PairID, r }

type splitFn struct{}

// Outcome names, also used as metric names: congrad.filter/<outcome>.<lang>.
const (
	OutKept    = "kept"
	OutDropped = "dropped"
	OutDead    = "dead"
	OutOrphan  = "orphan_sketch"
)

func count(ctx context.Context, outcome, lang string) {
	beam.NewCounter("congrad.filter", outcome+"."+lang).Inc(ctx, 1)
	beam.NewCounter("congrad.filter", outcome).Inc(ctx, 1)
}

// payload is the dead-letter copy of a pair, truncated: enough to find it.
func payload(p schemas.Pair) string {
	trunc := func(s string) string {
		if len(s) > 200 {
			return s[:200] + "…"
		}
		return s
	}
	b, _ := json.Marshal(map[string]string{"pair_id": p.PairID, "lang": p.Lang, "prompt": trunc(p.Prompt),
		"chosen": trunc(p.Chosen), "rejected": trunc(p.Rejected)})
	return string(b)
}

func (f *splitFn) ProcessElement(ctx context.Context, id string,
	pairs func(*schemas.Pair) bool, decs func(*schemas.Decision) bool,
	fails func(*Failure) bool, refs func(*Refs) bool,
	kept func(schemas.Pair), dropped func(schemas.Dropped), decisions func(schemas.Decision), dead func(schemas.DeadLetter)) {
	ps, ds, fs := beamiter.Drain(pairs), beamiter.Drain(decs), beamiter.Drain(fails)
	var r Refs
	hasRefs := refs(&r)

	deadPair := func(p schemas.Pair, reason string) {
		count(ctx, OutDead, p.Lang)
		dead(schemas.DeadLetter{Stage: Stage, Source: p.PairID, Row: -1, Reason: reason, Payload: payload(p)})
	}
	if len(ps) == 0 {
		// Rows whose pair is missing. Validate dead-letters orphan sketches
		// before scoring, so only failures from elsewhere can land here.
		for _, d := range ds {
			count(ctx, OutOrphan, d.Lang)
			dead(schemas.DeadLetter{Stage: Stage, Source: id, Row: -1, Reason: reason(KindOrphan, "verdict without pair"), Payload: fmt.Sprintf("score=%v", d.Score)})
		}
		for _, fl := range fs {
			count(ctx, OutOrphan, fl.Lang)
			dead(schemas.DeadLetter{Stage: Stage, Source: id, Row: -1, Reason: reason(KindOrphan, "failure without pair: %s", fl.Reason)})
		}
		return
	}
	if len(ps) > 1 {
		for _, p := range ps {
			deadPair(p, reason(KindDuplicatePair, "%d pairs share this pair_id", len(ps)))
		}
		return
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].Reason < fs[j].Reason })
	p := ps[0]
	switch {
	case len(fs) > 0:
		deadPair(p, fs[0].Reason)
	case len(ds) == 0:
		deadPair(p, reason(KindNoSketch, "no sketch for this pair"))
	case len(ds) > 1:
		deadPair(p, reason(KindDuplicate, "%d verdicts for one pair", len(ds)))
	case ds[0].Lang != p.Lang:
		deadPair(p, reason(KindLangMismatch, "sketch language %q differs from pair language %q", ds[0].Lang, p.Lang))
	default:
		if hasRefs && !math.IsNaN(r.RefChosenLogp) {
			p.RefChosenLogp, p.RefRejectedLogp = r.RefChosenLogp, r.RefRejectedLogp
		}
		decisions(ds[0])
		if ds[0].Kept {
			count(ctx, OutKept, p.Lang)
			kept(p)
		} else {
			count(ctx, OutDropped, p.Lang)
			dropped(schemas.Dropped{Pair: p, Score: ds[0].Score, Rank: ds[0].Rank, Reason: ds[0].Reason})
		}
	}
}

func registerSplit() {
	register.Function1x1(refsOf)
	register.Function1x2(keyPair)
	register.Function1x2(keyDecision)
	register.Function1x2(keyFailure)
	register.Function1x2(keyRefs)
	register.DoFn10x0[context.Context, string, func(*schemas.Pair) bool, func(*schemas.Decision) bool,
		func(*Failure) bool, func(*Refs) bool, func(schemas.Pair), func(schemas.Dropped),
		func(schemas.Decision), func(schemas.DeadLetter)](&splitFn{})
	register.Emitter1[schemas.Pair]()
	register.Emitter1[schemas.Dropped]()
	beam.RegisterType(reflect.TypeOf(schemas.Dropped{}))
	register.Emitter1[schemas.DeadLetter]()
	register.Iter1[*schemas.Pair]()
	register.Iter1[*schemas.Decision]()
	register.Iter1[*Failure]()
	register.Iter1[*Refs]()
	beam.RegisterType(reflect.TypeOf(Refs{}))
	beam.RegisterType(reflect.TypeOf(Hist{}))
	beam.RegisterType(reflect.TypeOf(Bucket{}))
}
