package filter

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/congrad-beam/congrad/congrad/accum"
	"github.com/congrad-beam/congrad/congrad/gate"
	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/congrad/vec"
	"github.com/congrad-beam/congrad/internal/beamiter"
	"github.com/congrad-beam/congrad/internal/sideinput"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/transforms/aggregate"
	"github.com/congrad-beam/congrad/transforms/lakeio"
)

// The method options of METHOD.md §8 (issue 13) as Beam transforms. They
// keep the memory design of the pair filter: sketch files are streamed in
// batches by each pass, and what leaves a pass is small (scores, one
// bootstrap state per language per split, group sums), never a pair's
// sketch vector.
//
//   - Gate (leave-out | anchor): the per-language directions give each
//     language's reference R_l (GateRefs: Σ_{j≠l} G_j, or the anchor, the mean
//     of the anchor sketch files); a pass over the sketches projects each
//     admitted pair onto its R_l into one gate.PoissonBoot per language per
//     split, merged per language in split order (deterministic bits); the
//     intervals and gate.FinishLeaveOut / gate.FinishAnchor give the Plan.
//   - The Plan (a singleton side input) holds each language's scoring
//     target (g*, g*_{-l}, the anchor consensus), its gate verdict and the
//     audit names.
//   - Group scoring: n_l from a count side input; a pass assigns each pair
//     to group gate.HashGroup(seed, id, ⌈n_l/N⌉) and sums the group's
//     sketches per split (float64, flushed every maxGroupsPerFlush groups);
//     the partial sums of a group are added in (split, flush) order, the
//     group's cosine with its language's target (gate.GroupScore) is joined
//     back to the members as their score.
//   - RankPlan applies the keep rule per language, then the gate (gated
//     languages' pairs dropped with the gate's reason, gate.Apply's rule)
//     and fills the audit fields of every decision and language.

// Method configures the method passes.
type Method struct {
	Gate      string // GateLeaveOut | GateAnchor | "" (none)
	GroupSize int    // 0: pair scores; N: group scores
	Seed      uint64 // bootstrap weights, group hashing, PCGrad order
	Boot      gate.BootOptions
	Files     FileOptions
	// GroupsHeld caps the group sums a group pass holds before it emits
	// them (0: the memory budget, maxGroupsPerFlush).
	GroupsHeld int
	// SpillDir, when set (an absolute local path every worker shares, as
	// on Prism in-process), makes the group pass write its partial sums to
	// files there and shuffle only where they are: Prism holds every
	// shuffled byte in memory, several times over. The caller removes it
	// after the pipeline.
	SpillDir string
}

// Gates (Method.Gate).
const (
	GateLeaveOut = "leave-out"
	GateAnchor   = "anchor"
)

// ReferenceSum names the leave-out gate's reference in the audit.
const ReferenceSum = "sum of the other languages' G_j"

func (m Method) scoreType() string {
	if m.GroupSize > 0 {
		return "group:" + strconv.Itoa(m.GroupSize)
	}
	return ScorePair
}

func (m Method) gateOptions() gate.GateOptions {
	o := gate.DefaultGateOptions()
	o.Seed = m.Seed
	if m.Boot.B > 0 {
		o.Boot = m.Boot
	}
	return o
}

// DirList is every language's direction G_l, sorted by language.
type DirList struct{ Dirs []aggregate.Direction }

func (d DirList) dirs() map[string][]float32 {
	out := make(map[string][]float32, len(d.Dirs))
	for _, x := range d.Dirs {
		out[x.Lang] = x.Values
	}
	return out
}

// CollectDirs gathers the directions into one element.
//
//	PCollection<aggregate.Direction> -> singleton PCollection<DirList>
func CollectDirs(s beam.Scope, dirs beam.PCollection) beam.PCollection {
	return beam.Combine(s.Scope("filter.CollectDirs"), &dirListFn{}, dirs)
}

type dirListFn struct{}

func (dirListFn) CreateAccumulator() DirList { return DirList{} }
func (dirListFn) AddInput(a DirList, d aggregate.Direction) DirList {
	a.Dirs = append(a.Dirs, d)
	return a
}
func (dirListFn) MergeAccumulators(a, b DirList) DirList {
	a.Dirs = append(a.Dirs, b.Dirs...)
	return a
}
func (dirListFn) ExtractOutput(a DirList) DirList {
	sort.Slice(a.Dirs, func(i, j int) bool { return a.Dirs[i].Lang < a.Dirs[j].Lang })
	return a
}

// AnchorFiles is the anchor: the exact mean of every sketch in the anchor
// files (all languages together), as a DirList with one direction named
// gate.AnchorLang. An anchor sketch that fails Check fails the job: the
// anchor is a small trusted set, and a silently smaller one is not it.
//
//	PCollection<lakeio.Split> -> singleton PCollection<DirList>
func AnchorFiles(s beam.Scope, splits beam.PCollection, o FileOptions) beam.PCollection {
	s = s.Scope("filter.AnchorFiles")
	mustType("filter.AnchorFiles", splits, reflect.TypeOf(lakeio.Split{}))
	partials := beam.ParDo(s, &anchorSplitFn{Files: o}, splits)
	ao := aggregate.Options{Method: aggregate.Mean, K: o.K}
	return CollectDirs(s, aggregate.FromPartials(s, partials, ao))
}

type anchorSplitFn struct{ Files FileOptions }

func (f *anchorSplitFn) ProcessElement(ctx context.Context, sp lakeio.Split, emit func(string, accum.Mean)) error {
	m := accum.NewMean(f.Files.K)
	err := eachSketch(ctx, sp, f.Files, func(sk schemas.Sketch) error {
		if r := checkSketch(sk, f.Files.K); r != "" {
			return fmt.Errorf("filter: anchor %s: pair %q: %s", sp.Path, sk.PairID, r)
		}
		return m.Add(sk.Values)
	})
	if err != nil {
		return err
	}
	if m.N > 0 {
		emit(gate.AnchorLang, *m)
	}
	return nil
}

// GateRefs are the gate's references, one per language (sorted).
type GateRefs struct {
	Kind  string
	Langs []string
	K     int
	Vecs  []float32 // len(Langs)×K, row-major; a zero row: no reference
}

func (r GateRefs) row(i int) []float32 { return r.Vecs[i*r.K : (i+1)*r.K] }

// GateRefsOf computes the references: leave-out R_l = Σ_{j≠l} G_j
// (gate.LeaveOutRefs, RefSum); anchor: the anchor for every language.
//
//	singleton PCollection<DirList> (directions), singleton PCollection<DirList> (anchor; leave-out: empty) -> singleton PCollection<GateRefs>
func GateRefsOf(s beam.Scope, dirs, anchor beam.PCollection, m Method) beam.PCollection {
	s = s.Scope("filter.GateRefs")
	return beam.ParDo(s, &refsFn{Kind: m.Gate, K: m.Files.K, Seed: m.Seed}, dirs, sideinput.Read(s, anchor))
}

type refsFn struct {
	Kind string
	K    int
	Seed uint64
}

func (f *refsFn) ProcessElement(dl DirList, anchorIt func(*DirList) bool) (GateRefs, error) {
	dirs := dl.dirs()
	r := GateRefs{Kind: f.Kind, K: f.K}
	var refs map[string][]float32
	switch f.Kind {
	case GateLeaveOut:
		var err error
		if refs, err = gate.LeaveOutRefs(dirs, gate.GateOptions{Reference: gate.RefSum, Seed: f.Seed}); err != nil {
			return r, err
		}
	case GateAnchor:
		a, err := anchorOf(anchorIt)
		if err != nil {
			return r, err
		}
		refs = map[string][]float32{}
		for l := range dirs {
			refs[l] = a
		}
	default:
		return r, fmt.Errorf("filter: gate %q: want %s or %s", f.Kind, GateLeaveOut, GateAnchor)
	}
	for _, d := range dl.Dirs {
		r.Langs = append(r.Langs, d.Lang)
		row := refs[d.Lang]
		if row == nil {
			row = make([]float32, f.K)
		}
		r.Vecs = append(r.Vecs, row...)
	}
	return r, nil
}

func anchorOf(it func(*DirList) bool) ([]float32, error) {
	var a DirList
	if !it(&a) || len(a.Dirs) == 0 {
		return nil, fmt.Errorf("filter: anchor: the anchor files hold no sketch")
	}
	return a.Dirs[0].Values, nil
}

// refIndex is GateRefs read once per DoFn instance, with each language's norm.
type refIndex struct {
	loaded bool
	ref    map[string][]float32
	norm   map[string]float64
}

func (x *refIndex) load(it func(*GateRefs) bool) error {
	if x.loaded {
		return nil
	}
	var r GateRefs
	if !it(&r) {
		return fmt.Errorf("filter: gate references missing")
	}
	x.ref, x.norm = map[string][]float32{}, map[string]float64{}
	for i, l := range r.Langs {
		if n := vec.Norm(r.row(i)); n > 0 {
			x.ref[l], x.norm[l] = r.row(i), n
		}
	}
	x.loaded = true
	return nil
}

// proj is a pair's projection on its language's reference, or false when
// the language has none.
func (x *refIndex) proj(sk schemas.Sketch) (float64, bool) {
	r, ok := x.ref[sk.Lang]
	if !ok {
		return 0, false
	}
	return vec.Dot(sk.Values, r) / x.norm[sk.Lang], true
}

// BootPart is one split's bootstrap state of one language.
type BootPart struct {
	Key  string // orders the parts of a language: split path and start
	Boot gate.PoissonBoot
}

// LangBoot is one language's merged bootstrap state.
type LangBoot struct {
	Lang string
	Boot gate.PoissonBoot
}

// ProjRow is one pair's projection (the in-memory path).
type ProjRow struct {
	PairID string
	Proj   float64
}

// splitKey names a split within a pipeline (its file and first row) and
// orders the splits of a file by their first row.
func splitKey(sp lakeio.Split) string { return fmt.Sprintf("%s\x00%020d", sp.Path, sp.Start) }

// GateBootsFiles is the gate's pass over sketch files: each admitted
// pair's projection a_i = <s_i, R_l>/||R_l|| goes into its language's
// gate.PoissonBoot, one per language per split; the parts of a language
// are merged in split order, so the state's bits do not depend on the
// runner's order.
//
//	PCollection<lakeio.Split>, PCollection<string> (excluded), singleton PCollection<GateRefs> -> PCollection<LangBoot>
func GateBootsFiles(s beam.Scope, splits, excluded, refs beam.PCollection, m Method) beam.PCollection {
	s = s.Scope("filter.GateBootsFiles")
	o := m.gateOptions()
	parts := beam.ParDo(s, &bootSplitFn{Files: m.Files, B: o.Boot.B, Seed: m.Seed}, bindSplitsWith(s, splits, excluded, refs, bindRefsFn))
	return beam.ParDo(s, mergeBoots, beam.GroupByKey(s, parts))
}

type bootSplitFn struct {
	Files FileOptions
	B     int
	Seed  uint64
	ex    excludedSet
	refs  refIndex
}

func (f *bootSplitFn) ProcessElement(ctx context.Context, b BoundSplit, emit func(string, BootPart)) error {
	sp, excluded := b.Split, beamiter.Of(b.Excluded)
	if err := f.refs.load(beamiter.Of(b.Refs)); err != nil {
		return err
	}
	boots := map[string]*gate.PoissonBoot{}
	err := eachSketch(ctx, sp, f.Files, func(sk schemas.Sketch) error {
		if f.ex.has(sk.PairID, excluded) || checkSketch(sk, f.Files.K) != "" {
			return nil
		}
		a, ok := f.refs.proj(sk)
		if !ok {
			return nil
		}
		b := boots[sk.Lang]
		if b == nil {
			b = gate.NewPoissonBoot(f.B, f.Seed)
			boots[sk.Lang] = b
		}
		return b.Add(sk.PairID, a)
	})
	if err != nil {
		return err
	}
	for _, l := range sortedMapKeys(boots) {
		emit(l, BootPart{Key: splitKey(sp), Boot: *boots[l]})
	}
	return nil
}

func mergeBoots(lang string, parts func(*BootPart) bool) (LangBoot, error) {
	var ps []BootPart
	var p BootPart
	for parts(&p) {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Key < ps[j].Key })
	acc := ps[0].Boot
	acc.WSum, acc.WCount = append([]float64(nil), acc.WSum...), append([]float64(nil), acc.WCount...)
	for _, x := range ps[1:] {
		if err := acc.Merge(&x.Boot); err != nil {
			return LangBoot{}, fmt.Errorf("filter: gate bootstrap of %s: %w", lang, err)
		}
	}
	return LangBoot{Lang: lang, Boot: acc}, nil
}

// GateBoots is GateBootsFiles for sketches in a PCollection (congrad run):
// the projections are small rows, added per language in pair-id order.
//
//	PCollection<schemas.Sketch> (checked), singleton PCollection<GateRefs> -> PCollection<LangBoot>
func GateBoots(s beam.Scope, sketches, refs beam.PCollection, m Method) beam.PCollection {
	s = s.Scope("filter.GateBoots")
	rows := beam.ParDo(s, &projFn{}, sketches, sideinput.Read(s, refs))
	o := m.gateOptions()
	return beam.ParDo(s, &bootRowsFn{B: o.Boot.B, Seed: m.Seed}, beam.GroupByKey(s, rows))
}

type projFn struct{ refs refIndex }

func (f *projFn) ProcessElement(sk schemas.Sketch, refsIt func(*GateRefs) bool, emit func(string, ProjRow)) error {
	if err := f.refs.load(refsIt); err != nil {
		return err
	}
	if a, ok := f.refs.proj(sk); ok {
		emit(sk.Lang, ProjRow{PairID: sk.PairID, Proj: a})
	}
	return nil
}

type bootRowsFn struct {
	B    int
	Seed uint64
}

func (f *bootRowsFn) ProcessElement(lang string, rows func(*ProjRow) bool) (LangBoot, error) {
	var rs []ProjRow
	var r ProjRow
	for rows(&r) {
		rs = append(rs, r)
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].PairID < rs[j].PairID })
	b := gate.NewPoissonBoot(f.B, f.Seed)
	for _, r := range rs {
		if err := b.Add(r.PairID, r.Proj); err != nil {
			return LangBoot{}, err
		}
	}
	return LangBoot{Lang: lang, Boot: *b}, nil
}

// Plan is each language's scoring target, gate verdict and audit names.
type Plan struct {
	Kind        string   // GateLeaveOut | GateAnchor | "" (no gate)
	ScoreType   string   // pair | group:N
	Langs       []string // sorted
	K           int
	Targets     []float32 // len(Langs)×K; nil when there is no consensus
	TargetNames []string
	GateTags    []string // audit: none | leave-out open | leave-out gated | anchor open | ...
	Gates       []GateVerdict
}

func (p Plan) index(lang string) int {
	i := sort.SearchStrings(p.Langs, lang)
	if i < len(p.Langs) && p.Langs[i] == lang {
		return i
	}
	return -1
}

// PlanOf decides the gate and each language's target.
//
//	singleton PCollection<DirList>, singleton PCollection<aggregate.Consensus>,
//	PCollection<LangBoot> (gate only), singleton PCollection<DirList> (anchor only) -> singleton PCollection<Plan>
func PlanOf(s beam.Scope, dirs, cons, boots, anchor beam.PCollection, m Method) beam.PCollection {
	s = s.Scope("filter.Plan")
	o := m.gateOptions()
	return beam.ParDo(s, &planFn{Kind: m.Gate, ScoreType: m.scoreType(), K: m.Files.K, Seed: m.Seed, Level: o.Boot.Level},
		dirs, sideinput.Read(s, cons), sideinput.Read(s, boots), sideinput.Read(s, anchor))
}

type planFn struct {
	Kind, ScoreType string
	K               int
	Seed            uint64
	Level           float64
}

func (f *planFn) ProcessElement(dl DirList, consIt func(*aggregate.Consensus) bool, bootsIt func(*LangBoot) bool,
	anchorIt func(*DirList) bool) (Plan, error) {
	p := Plan{Kind: f.Kind, ScoreType: f.ScoreType, K: f.K}
	for _, d := range dl.Dirs {
		p.Langs = append(p.Langs, d.Lang)
	}
	if f.Kind == "" {
		var c aggregate.Consensus
		if !consIt(&c) {
			if len(p.Langs) > 0 {
				return p, fmt.Errorf("filter: plan: %d languages but no consensus", len(p.Langs))
			}
			return p, nil
		}
		if len(c.G) != f.K {
			return p, fmt.Errorf("filter: plan: consensus has %d values, want k=%d", len(c.G), f.K)
		}
		for range p.Langs {
			p.Targets = append(p.Targets, c.G...)
			p.TargetNames = append(p.TargetNames, TargetConsensus)
			p.GateTags = append(p.GateTags, GateNone)
		}
		return p, nil
	}
	if len(dl.Dirs) == 0 {
		return p, nil
	}
	dirs := dl.dirs()
	boots := map[string]gate.PoissonBoot{}
	var lb LangBoot
	for bootsIt(&lb) {
		boots[lb.Lang] = lb.Boot
	}
	cis := map[string]gate.CI{}
	for _, l := range p.Langs {
		b, ok := boots[l]
		if !ok {
			continue // no reference (alone, or the others cancel out)
		}
		ci, err := b.CI(vec.Norm(dirs[l]), f.Level)
		if err != nil {
			return p, fmt.Errorf("filter: gate interval of %s: %w", l, err)
		}
		cis[l] = ci
	}
	o := gate.DefaultGateOptions()
	o.Seed = f.Seed
	var g gate.Gating
	var err error
	ref := ReferenceSum
	if f.Kind == GateAnchor {
		ref = "anchor"
		a, aerr := anchorOf(anchorIt)
		if aerr != nil {
			return p, aerr
		}
		g, err = gate.FinishAnchor(dirs, a, cis, o)
	} else {
		g, err = gate.FinishLeaveOut(dirs, cis, o)
	}
	if err != nil {
		return p, fmt.Errorf("filter: gate %s: %w", f.Kind, err)
	}
	for i, lg := range g.Langs {
		if lg.Lang != p.Langs[i] {
			return p, fmt.Errorf("filter: gate %s: language order %q != %q", f.Kind, lg.Lang, p.Langs[i])
		}
		_, tested := cis[lg.Lang]
		p.Gates = append(p.Gates, GateVerdict{Kind: f.Kind, Reference: ref, Cos: lg.Cos, Tested: tested, Gated: lg.Gated, Reason: lg.Reason})
		p.GateTags = append(p.GateTags, f.Kind+" "+pickStr(lg.Gated, GateGated, GateOpen))
		target, name := g.Consensus.Consensus, TargetOpen
		if f.Kind == GateAnchor {
			name = TargetAnchor
		} else if lo, ok := g.LeaveOut[lg.Lang]; ok && !lg.Gated {
			target, name = lo.Consensus, TargetLeaveOut
		}
		p.Targets = append(p.Targets, target...)
		p.TargetNames = append(p.TargetNames, name)
	}
	return p, nil
}

func pickStr(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

// planIndex is a Plan read once per DoFn instance, with each language's
// target ready for cosines.
type planIndex struct {
	loaded  bool
	plan    Plan
	targets map[string]*vec.Target
	errs    map[string]string
}

func (x *planIndex) load(it func(*Plan) bool) error {
	if x.loaded {
		return nil
	}
	if !it(&x.plan) {
		return fmt.Errorf("filter: plan missing")
	}
	x.targets, x.errs = map[string]*vec.Target{}, map[string]string{}
	for i, l := range x.plan.Langs {
		if len(x.plan.Targets) < (i+1)*x.plan.K {
			x.errs[l] = reason(KindUnscorable, "no consensus direction")
			continue
		}
		t, err := vec.NewTarget(x.plan.Targets[i*x.plan.K : (i+1)*x.plan.K])
		if err != nil {
			x.errs[l] = reason(KindUnscorable, "target %s unusable: %v", x.plan.TargetNames[i], err)
			continue
		}
		x.targets[l] = t
	}
	x.loaded = true
	return nil
}

// target is lang's target, or the unscorable reason.
func (x *planIndex) target(lang string) (*vec.Target, string) {
	if t, ok := x.targets[lang]; ok {
		return t, ""
	}
	if e, ok := x.errs[lang]; ok {
		return nil, e
	}
	return nil, reason(KindUnscorable, "no direction for language %q", lang)
}

func (x *planIndex) score(sk schemas.Sketch, ok func(keep.Scored), bad func(Failure)) {
	t, why := x.target(sk.Lang)
	if t == nil {
		bad(Failure{PairID: sk.PairID, Lang: sk.Lang, Reason: why})
		return
	}
	c, err := t.Cosine(sk.Values)
	if err != nil || math.IsNaN(c) || math.IsInf(c, 0) {
		bad(Failure{PairID: sk.PairID, Lang: sk.Lang, Reason: reason(KindUnscorable, "%s: %v", keep.ReasonNonFinite, err)})
		return
	}
	ok(keep.Scored{PairID: sk.PairID, Lang: sk.Lang, Score: c})
}

// ScorePlanFiles is ScoreFiles against each language's target in the plan.
//
//	PCollection<lakeio.Split>, PCollection<string>, singleton PCollection<Plan> -> (PCollection<keep.Scored>, PCollection<Failure>)
func ScorePlanFiles(s beam.Scope, splits, excluded, plan beam.PCollection, o FileOptions) (scored, failed beam.PCollection) {
	s = s.Scope("filter.ScorePlanFiles")
	return beam.ParDo2(s, &scorePlanSplitFn{Files: o}, bindSplitsWith(s, splits, excluded, plan, bindPlanFn))
}

type scorePlanSplitFn struct {
	Files FileOptions
	ex    excludedSet
	pl    planIndex
}

func (f *scorePlanSplitFn) ProcessElement(ctx context.Context, b BoundSplit, ok func(keep.Scored), bad func(Failure)) error {
	sp, excluded := b.Split, beamiter.Of(b.Excluded)
	if err := f.pl.load(beamiter.Of(b.Plan)); err != nil {
		return err
	}
	return eachSketch(ctx, sp, f.Files, func(sk schemas.Sketch) error {
		if f.ex.has(sk.PairID, excluded) || checkSketch(sk, f.Files.K) != "" {
			return nil
		}
		f.pl.score(sk, ok, bad)
		return nil
	})
}

// ScorePlan is ScorePlanFiles for checked sketches in a PCollection.
//
//	PCollection<schemas.Sketch>, singleton PCollection<Plan> -> (PCollection<keep.Scored>, PCollection<Failure>)
func ScorePlan(s beam.Scope, sketches, plan beam.PCollection) (scored, failed beam.PCollection) {
	s = s.Scope("filter.ScorePlan")
	return beam.ParDo2(s, &scorePlanFn{}, sketches, sideinput.Read(s, plan))
}

type scorePlanFn struct{ pl planIndex }

func (f *scorePlanFn) ProcessElement(sk schemas.Sketch, planIt func(*Plan) bool, ok func(keep.Scored), bad func(Failure)) error {
	if err := f.pl.load(planIt); err != nil {
		return err
	}
	f.pl.score(sk, ok, bad)
	return nil
}

// LangCount is the number of admitted sketches of one language.
type LangCount struct {
	Lang string
	N    int64
}

// CountPartials counts the admitted sketches per language from
// AggregateFiles' partial accumulators (mean and ema keys alike).
//
//	PCollection<KV<string, accum.Mean>> -> PCollection<LangCount>
func CountPartials(s beam.Scope, partials beam.PCollection) beam.PCollection {
	s = s.Scope("filter.CountPartials")
	return beam.ParDo(s, toLangCount, beam.CombinePerKey(s, sumInt64, beam.ParDo(s, partialCount, partials)))
}

func partialCount(key string, m accum.Mean) (string, int64) {
	lang, _, _ := strings.Cut(key, "\x00")
	return lang, m.N
}

func sumInt64(a, b int64) int64 { return a + b }

func toLangCount(lang string, n int64) LangCount { return LangCount{Lang: lang, N: n} }

// CountSketches counts checked sketches per language.
//
//	PCollection<schemas.Sketch> -> PCollection<LangCount>
func CountSketches(s beam.Scope, sketches beam.PCollection) beam.PCollection {
	s = s.Scope("filter.CountSketches")
	return beam.ParDo(s, toLangCount, beam.CombinePerKey(s, sumInt64, beam.ParDo(s, sketchOne, sketches)))
}

func sketchOne(sk schemas.Sketch) (string, int64) { return sk.Lang, 1 }

// Member is a pair's group.
type Member struct {
	PairID, Lang string
	Group        int
}

// GroupPart is a partial sum of one group's sketches: Sum (float64) for
// several sketches, One (the sketch's float32 values, the same sum exactly)
// for one; or, when the group pass spills (Method.SpillDir), neither, and
// the values are at Off in File (k float32 when Single, else k float64,
// little-endian).
type GroupPart struct {
	Key    string // orders the parts of a group
	Sum    []float64
	One    []float32
	File   string
	Off    int64
	Single bool
}

// groupBudget bounds a group pass's memory: it holds at most
// groupBudget/(8·K) partial sums of K float64 (and at least 256) before it
// emits them (1024 sums at k = 8192). The bound depends only on K, so the
// flush points, and the order the partial sums are added in, are the same
// on every run.
const groupBudget = 64 << 20

func maxGroupsPerFlush(k int) int { return max(256, groupBudget/(8*max(k, 1))) }

// groupIndex reads the counts once and assigns groups.
type groupIndex struct {
	loaded bool
	m      map[string]int // groups per language
}

func (x *groupIndex) load(it func(*LangCount) bool, size int) {
	if x.loaded {
		return
	}
	x.m = map[string]int{}
	var c LangCount
	for it(&c) {
		x.m[c.Lang] = int((c.N + int64(size) - 1) / int64(size))
	}
	x.loaded = true
}

func groupKey(lang string, g int) string { return lang + "\x00" + strconv.Itoa(g) }

// GroupFiles is the group pass over sketch files: each admitted pair's
// group (gate.HashGroup over ⌈n_l/N⌉ groups) as a Member row, and the
// groups' partial sums keyed by group.
//
//	PCollection<lakeio.Split>, PCollection<string>, PCollection<LangCount>
//	  -> (PCollection<Member>, PCollection<KV<string, GroupPart>>)
func GroupFiles(s beam.Scope, splits, excluded, counts beam.PCollection, m Method) (members, parts beam.PCollection) {
	s = s.Scope("filter.GroupFiles")
	held := m.GroupsHeld
	if held <= 0 {
		held = maxGroupsPerFlush(m.Files.K)
	}
	spill := ""
	if m.SpillDir != "" {
		if !filepath.IsAbs(m.SpillDir) || strings.Contains(m.SpillDir, "://") {
			panic(fmt.Sprintf("filter: group pass SpillDir %q: want an absolute local path", m.SpillDir))
		}
		spill = filepath.Join(m.SpillDir, "group-"+lakeio.RandomHex(8))
	}
	return beam.ParDo2(s, &groupSplitFn{Files: m.Files, Size: m.GroupSize, Seed: m.Seed, Held: held, Spill: spill},
		bindSplitsWith(s, splits, excluded, counts, bindCountsFn))
}

type groupSplitFn struct {
	Files FileOptions
	Size  int
	Seed  uint64
	Held  int
	Spill string // this pass's spill directory ("" = partial sums go through the shuffle)
	ex    excludedSet
	gi    groupIndex
}

// groupSum is a partial sum being built: the first sketch is kept as it
// is (float32) and only a second one makes it a float64 sum.
type groupSum struct {
	one []float32
	sum []float64
}

// add adds v, which it does not keep (eachSketch's values live only as
// long as their batch).
func (g *groupSum) add(v []float32) {
	if g.sum == nil && g.one == nil {
		g.one = slices.Clone(v)
		return
	}
	if g.sum == nil {
		g.sum = make([]float64, len(v))
		for j, x := range g.one {
			g.sum[j] = float64(x)
		}
		g.one = nil
	}
	for j, x := range v {
		g.sum[j] += float64(x)
	}
}

// spillParts writes a flush's partial sums, in key order, to one new file
// under dir and returns where each is.
func spillParts(dir string, keys []string, sums map[string]*groupSum, part func(string, GroupPart), key string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "parts-*")
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var off int64
	var parts []GroupPart
	var buf []byte
	for _, k := range keys {
		g := sums[k]
		buf = buf[:0]
		if g.sum == nil {
			for _, x := range g.one {
				buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(x))
			}
		} else {
			for _, x := range g.sum {
				buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(x))
			}
		}
		if _, err := w.Write(buf); err != nil {
			f.Close()
			return err
		}
		parts = append(parts, GroupPart{Key: key, File: f.Name(), Off: off, Single: g.sum == nil})
		off += int64(len(buf))
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	for i, k := range keys {
		part(k, parts[i])
	}
	return nil
}

func (f *groupSplitFn) ProcessElement(ctx context.Context, b BoundSplit, member func(Member), part func(string, GroupPart)) error {
	sp, excluded := b.Split, beamiter.Of(b.Excluded)
	f.gi.load(beamiter.Of(b.Counts), f.Size)
	sums := map[string]*groupSum{}
	flushes := 0
	flush := func() error {
		key := fmt.Sprintf("%s\x00%08d", splitKey(sp), flushes)
		keys := sortedMapKeys(sums)
		if f.Spill != "" && len(keys) > 0 {
			if err := spillParts(f.Spill, keys, sums, part, key); err != nil {
				return fmt.Errorf("filter: group pass: spill: %w", err)
			}
		} else {
			for _, k := range keys {
				g := sums[k]
				part(k, GroupPart{Key: key, Sum: g.sum, One: g.one})
			}
		}
		sums = map[string]*groupSum{}
		flushes++
		return nil
	}
	err := eachSketch(ctx, sp, f.Files, func(sk schemas.Sketch) error {
		if f.ex.has(sk.PairID, excluded) || checkSketch(sk, f.Files.K) != "" {
			return nil
		}
		g := gate.HashGroup(f.Seed, sk.PairID, f.gi.m[sk.Lang])
		member(Member{PairID: sk.PairID, Lang: sk.Lang, Group: g})
		k := groupKey(sk.Lang, g)
		sum, ok := sums[k]
		if !ok {
			if len(sums) >= f.Held {
				if err := flush(); err != nil {
					return err
				}
			}
			sum = &groupSum{}
			sums[k] = sum
		}
		sum.add(sk.Values)
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// Group is GroupFiles for checked sketches in a PCollection: each sketch
// is its own part, keyed by its pair id.
//
//	PCollection<schemas.Sketch>, PCollection<LangCount> -> (PCollection<Member>, PCollection<KV<string, GroupPart>>)
func Group(s beam.Scope, sketches, counts beam.PCollection, m Method) (members, parts beam.PCollection) {
	s = s.Scope("filter.Group")
	return beam.ParDo2(s, &groupFn{Size: m.GroupSize, Seed: m.Seed}, sketches, sideinput.Read(s, counts))
}

type groupFn struct {
	Size int
	Seed uint64
	gi   groupIndex
}

func (f *groupFn) ProcessElement(sk schemas.Sketch, counts func(*LangCount) bool, member func(Member), part func(string, GroupPart)) {
	f.gi.load(counts, f.Size)
	g := gate.HashGroup(f.Seed, sk.PairID, f.gi.m[sk.Lang])
	member(Member{PairID: sk.PairID, Lang: sk.Lang, Group: g})
	part(groupKey(sk.Lang, g), GroupPart{Key: sk.PairID, One: sk.Values})
}

// GroupScore is one group's score (Err: why it has none).
type GroupScore struct {
	Key   string // groupKey(lang, group)
	Score float64
	Err   string
}

// GroupScores adds each group's parts in key order and scores the sum
// against its language's target (gate.GroupScore).
//
//	PCollection<KV<string, GroupPart>>, singleton PCollection<Plan> -> PCollection<GroupScore>
func GroupScores(s beam.Scope, parts, plan beam.PCollection) beam.PCollection {
	s = s.Scope("filter.GroupScores")
	return beam.ParDo(s, &groupScoreFn{}, beam.GroupByKey(s, parts), sideinput.Read(s, plan))
}

type groupScoreFn struct {
	pl    planIndex
	buf   []byte
	files map[string]*os.File
}

// addPart adds one partial sum (in memory or spilled) into sum.
func (f *groupScoreFn) addPart(sum []float64, p GroupPart) error {
	k := len(sum)
	switch {
	case p.File != "":
		size := 8
		if p.Single {
			size = 4
		}
		if cap(f.buf) < k*size {
			f.buf = make([]byte, k*size)
		}
		b := f.buf[:k*size]
		if err := f.readAt(p.File, p.Off, b); err != nil {
			return fmt.Errorf("spilled partial sum: %w", err)
		}
		if p.Single {
			for j := range sum {
				sum[j] += float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*j:])))
			}
		} else {
			for j := range sum {
				sum[j] += math.Float64frombits(binary.LittleEndian.Uint64(b[8*j:]))
			}
		}
	case p.One != nil:
		if len(p.One) != k {
			return fmt.Errorf("partial sum of %d values, want k=%d", len(p.One), k)
		}
		for j, x := range p.One {
			sum[j] += float64(x)
		}
	default:
		if len(p.Sum) != k {
			return fmt.Errorf("partial sum of %d values, want k=%d", len(p.Sum), k)
		}
		for j, x := range p.Sum {
			sum[j] += x
		}
	}
	return nil
}

// readAt reads len(b) bytes at off of a spill file, kept open until
// Teardown.
func (f *groupScoreFn) readAt(name string, off int64, b []byte) error {
	h, ok := f.files[name]
	if !ok {
		var err error
		if h, err = os.Open(name); err != nil {
			return err
		}
		if f.files == nil {
			f.files = map[string]*os.File{}
		}
		f.files[name] = h
	}
	_, err := h.ReadAt(b, off)
	return err
}

// Teardown closes the spill files read (one per flush of the group pass;
// FinishBundle would have to take the side input too).
func (f *groupScoreFn) Teardown() {
	for name, h := range f.files {
		h.Close()
		delete(f.files, name)
	}
}

func (f *groupScoreFn) ProcessElement(key string, partsIt func(*GroupPart) bool, planIt func(*Plan) bool) (GroupScore, error) {
	if err := f.pl.load(planIt); err != nil {
		return GroupScore{}, err
	}
	var ps []GroupPart
	var p GroupPart
	for partsIt(&p) {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Key < ps[j].Key })
	sum := make([]float64, f.pl.plan.K)
	for _, p := range ps {
		if err := f.addPart(sum, p); err != nil {
			return GroupScore{}, fmt.Errorf("filter: group %q: %w", key, err)
		}
	}
	lang, _, _ := strings.Cut(key, "\x00")
	t, why := f.pl.target(lang)
	if t == nil {
		return GroupScore{Key: key, Err: why}, nil
	}
	c, err := gate.GroupScore(sum, t)
	if err != nil || math.IsNaN(c) || math.IsInf(c, 0) {
		return GroupScore{Key: key, Err: reason(KindUnscorable, "group score: %s: %v", keep.ReasonNonFinite, err)}, nil
	}
	return GroupScore{Key: key, Score: c}, nil
}

// JoinGroups gives every member its group's score.
//
//	PCollection<Member>, PCollection<GroupScore> -> (PCollection<keep.Scored>, PCollection<Failure>)
func JoinGroups(s beam.Scope, members, scores beam.PCollection) (scored, failed beam.PCollection) {
	s = s.Scope("filter.JoinGroups")
	return beam.ParDo2(s, &joinGroupFn{}, members, sideinput.Read(s, scores))
}

type joinGroupFn struct{ m map[string]GroupScore }

func (f *joinGroupFn) ProcessElement(mb Member, scores func(*GroupScore) bool, ok func(keep.Scored), bad func(Failure)) error {
	if f.m == nil {
		f.m = map[string]GroupScore{}
		var g GroupScore
		for scores(&g) {
			f.m[g.Key] = g
		}
	}
	g, found := f.m[groupKey(mb.Lang, mb.Group)]
	switch {
	case !found:
		// Every member's sketch went into its group's sum: a missing group
		// is a bug, not data, and must not pass as dead letters.
		return fmt.Errorf("filter: pair %q: group %d of %s has no score (%d group scores)", mb.PairID, mb.Group, mb.Lang, len(f.m))
	case g.Err != "":
		bad(Failure{PairID: mb.PairID, Lang: mb.Lang, Reason: g.Err})
	default:
		ok(keep.Scored{PairID: mb.PairID, Lang: mb.Lang, Score: g.Score})
	}
	return nil
}

// RankPlan is Rank under a plan: the keep rule per language (global-top's
// cutoff over the languages the gate left open), then the gate (a gated
// language's pairs are not kept and carry the gate's reason, gate.Apply),
// group scores' reasons prefixed (gate.GroupReasons), and the audit
// fields of every decision and language filled from the plan.
//
//	PCollection<keep.Scored>, singleton PCollection<Plan> -> (PCollection<schemas.Decision>, PCollection<Stats>)
func RankPlan(s beam.Scope, scored, plan beam.PCollection, opts Options) (verdicts, stats beam.PCollection) {
	s = s.Scope("filter.RankPlan")
	opts = rankOptions("filter.RankPlan", opts)
	mustType("filter.RankPlan", scored, reflect.TypeOf(keep.Scored{}))
	cutoff := beam.Create(s, keep.Cutoff{Keep: -1})
	if opts.Keep.Rule == keep.GlobalTop {
		open := beam.ParDo(s, &openOnlyFn{}, scored, sideinput.Read(s, plan))
		cutoff = globalCutoff(s, open, opts.Keep.Rho)
	}
	decisions, stats := rankBuckets(s, beam.ParDo(s, &scoreBatchFn{}, scored), cutoff, plan, opts)
	return beam.ParDo(s, blockDecisions, decisions), stats
}

// openOnlyFn keeps the scores of languages the gate left open.
type openOnlyFn struct {
	gated map[string]bool
}

func (f *openOnlyFn) ProcessElement(x keep.Scored, planIt func(*Plan) bool, emit func(keep.Scored)) {
	if f.gated == nil {
		f.gated = map[string]bool{}
		var p Plan
		if planIt(&p) {
			for i, g := range p.Gates {
				f.gated[p.Langs[i]] = g.Gated
			}
		}
	}
	if !f.gated[x.Lang] {
		emit(x)
	}
}

func sortedMapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func registerMethod() {
	register.Combiner2[DirList, aggregate.Direction](&dirListFn{})
	register.DoFn3x1[context.Context, lakeio.Split, func(string, accum.Mean), error](&anchorSplitFn{})
	register.DoFn2x2[DirList, func(*DirList) bool, GateRefs, error](&refsFn{})
	register.DoFn3x1[context.Context, BoundSplit, func(string, BootPart), error](&bootSplitFn{})
	register.Function2x2(mergeBoots)
	register.DoFn3x1[schemas.Sketch, func(*GateRefs) bool, func(string, ProjRow), error](&projFn{})
	register.DoFn2x2[string, func(*ProjRow) bool, LangBoot, error](&bootRowsFn{})
	register.DoFn4x2[DirList, func(*aggregate.Consensus) bool, func(*LangBoot) bool, func(*DirList) bool, Plan, error](&planFn{})
	register.DoFn4x1[context.Context, BoundSplit, func(keep.Scored), func(Failure), error](&scorePlanSplitFn{})
	register.DoFn4x1[schemas.Sketch, func(*Plan) bool, func(keep.Scored), func(Failure), error](&scorePlanFn{})
	register.Function2x2(partialCount)
	register.Function2x1(sumInt64)
	register.Function2x1(toLangCount)
	register.Function1x2(sketchOne)
	register.DoFn4x1[context.Context, BoundSplit, func(Member), func(string, GroupPart), error](&groupSplitFn{})
	register.DoFn4x0[schemas.Sketch, func(*LangCount) bool, func(Member), func(string, GroupPart)](&groupFn{})
	register.DoFn3x2[string, func(*GroupPart) bool, func(*Plan) bool, GroupScore, error](&groupScoreFn{})
	register.DoFn4x1[Member, func(*GroupScore) bool, func(keep.Scored), func(Failure), error](&joinGroupFn{})
	register.DoFn3x0[keep.Scored, func(*Plan) bool, func(keep.Scored)](&openOnlyFn{})
	register.Emitter2[string, BootPart]()
	register.Emitter2[string, ProjRow]()
	register.Emitter1[Member]()
	register.Emitter2[string, GroupPart]()
	register.Iter1[*DirList]()
	register.Iter1[*GateRefs]()
	register.Iter1[*BootPart]()
	register.Iter1[*ProjRow]()
	register.Iter1[*LangBoot]()
	register.Iter1[*Plan]()
	register.Iter1[*LangCount]()
	register.Iter1[*GroupPart]()
	register.Iter1[*GroupScore]()
	for _, t := range []any{DirList{}, GateRefs{}, BootPart{}, LangBoot{}, ProjRow{}, Plan{}, GateVerdict{}, LangCount{},
		Member{}, GroupPart{}, GroupScore{}, gate.PoissonBoot{}, gate.CI{}, gate.NoiseFit{}} {
		beam.RegisterType(reflect.TypeOf(t))
	}
}
