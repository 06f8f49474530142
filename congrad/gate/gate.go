package gate

import (
	"errors"
	"fmt"

	"github.com/congrad-beam/congrad/congrad/accum"
	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/congrad/pcgrad"
	"github.com/congrad-beam/congrad/congrad/vec"
)

// Reasons for a language-level decision (LangGate.Reason) and for the pairs
// of a gated language (keep.Verdict.Reason after Apply).
const (
	ReasonGatedLeaveOut = "language gated: CI of cos(G_l, other languages) below 0"
	ReasonGatedAnchor   = "language gated: CI of cos(G_l, anchor) below 0"
	ReasonOpenLeaveOut  = "language open: CI of cos(G_l, other languages) reaches 0 or above"
	ReasonOpenAnchor    = "language open: CI of cos(G_l, anchor) reaches 0 or above"
	ReasonOpenAlone     = "language open: no other language to compare with"
)

// AnchorLang is the name the anchor direction carries in a consensus that
// includes it (GateOptions.IncludeAnchor). It cannot collide with a
// language code of the pipeline, which never starts with '@'.
const AnchorLang = "@anchor"

// ErrTooFew: leave-one-out needs at least two languages.
var ErrTooFew = errors.New("gate: leave-one-out needs at least two languages")

// LangGate is the language-level decision on one language.
type LangGate struct {
	Lang   string
	Cos    CI // cos(G_l, reference) with its bootstrap interval
	Gated  bool
	Reason string
}

// Gating is the outcome of a language-level gate.
type Gating struct {
	Langs []LangGate // sorted by Lang
	// Consensus is PCGrad over the languages left open (and the anchor, when
	// included). Its Zero list and Langs say what went in.
	Consensus pcgrad.Result
	// LeaveOut[l] is PCGrad over the open languages other than l (only from
	// GateLeaveOut): the target that scores language l's pairs.
	LeaveOut map[string]pcgrad.Result
}

// Gated reports whether lang was gated, and why.
func (g Gating) Gated(lang string) (bool, string) {
	for _, lg := range g.Langs {
		if lg.Lang == lang {
			return lg.Gated, lg.Reason
		}
	}
	return false, ""
}

// GateOptions parametrise GateLeaveOut and GateAnchor.
type GateOptions struct {
	Boot BootOptions
	Seed uint64 // PCGrad permutation seed
	// Reference (GateLeaveOut only) is what language l is compared with:
	// RefSum (default, "") the plain sum of the other languages' G_j, or
	// RefPCGrad their PCGrad consensus g*_{-l}. PCGrad gives every other
	// language a say, so a second conflict language that agrees with l
	// keeps its conflicting part in g*_{-l} and shields l from the gate
	// (TestGateLeaveOut shows it); the plain sum is the majority's view.
	Reference string
	// IncludeAnchor (GateAnchor only) adds the anchor to the consensus as
	// one more direction, named AnchorLang, rescaled to the mean norm of
	// the open languages' directions so it weighs like one language.
	IncludeAnchor bool
}

// Gate references (GateOptions.Reference).
const (
	RefSum    = "sum"
	RefPCGrad = "pcgrad"
)

// DefaultGateOptions: DefaultBootOptions, seed 1, reference RefSum, anchor included.
func DefaultGateOptions() GateOptions {
	return GateOptions{Boot: DefaultBootOptions(), Seed: 1, Reference: RefSum, IncludeAnchor: true}
}

// Means returns the per-language mean vectors G_l (accum.Mean) and the
// vectors grouped by language, in input order.
func Means(vecs [][]float32, langs []string) (map[string][]float32, map[string][][]float32, error) {
	if len(vecs) != len(langs) || len(vecs) == 0 {
		return nil, nil, fmt.Errorf("%w: %d vectors, %d languages", ErrOptions, len(vecs), len(langs))
	}
	k := len(vecs[0])
	by := map[string][][]float32{}
	ms := map[string]*accum.Mean{}
	for i, v := range vecs {
		l := langs[i]
		if ms[l] == nil {
			ms[l] = accum.NewMean(k)
		}
		if err := ms[l].Add(v); err != nil {
			return nil, nil, fmt.Errorf("mean of %s: %w", l, err)
		}
		by[l] = append(by[l], v)
	}
	dirs := make(map[string][]float32, len(ms))
	for l, m := range ms {
		r, err := m.Result()
		if err != nil {
			return nil, nil, fmt.Errorf("mean of %s: %w", l, err)
		}
		dirs[l] = r
	}
	return dirs, by, nil
}

// LeaveOneOut returns, for every language l, the PCGrad consensus of the
// other languages, g*_{-l}. A pair of language l scored against g*_{-l}
// measures how it relates to what the others agree on; g* itself contains
// l's own projected direction, which every pair of l tends to agree with.
// Errors: ErrTooFew, and those of pcgrad.Consensus.
func LeaveOneOut(dirs map[string][]float32, seed uint64) (map[string]pcgrad.Result, error) {
	if len(dirs) < 2 {
		return nil, ErrTooFew
	}
	out := make(map[string]pcgrad.Result, len(dirs))
	for l := range dirs {
		others := make(map[string][]float32, len(dirs)-1)
		for m, g := range dirs {
			if m != l {
				others[m] = g
			}
		}
		r, err := pcgrad.Consensus(others, seed)
		if err != nil {
			return nil, fmt.Errorf("leave out %s: %w", l, err)
		}
		out[l] = r
	}
	return out, nil
}

// GateLeaveOut gates every language l whose direction conflicts with the
// other languages: the upper end of the bootstrap CI of cos(G_l, R_{-l})
// is below 0, R_{-l} = Σ_{j≠l} G_j (RefSum) or g*_{-l} (RefPCGrad), over
// all other languages. Then it
// recomputes the consensus over the open languages, and g*_{-l} over the
// open languages other than l, for scoring. A single language stays open.
func GateLeaveOut(vecs [][]float32, langs []string, o GateOptions) (Gating, error) {
	dirs, by, err := Means(vecs, langs)
	if err != nil {
		return Gating{}, err
	}
	refs, err := LeaveOutRefs(dirs, o)
	if err != nil {
		return Gating{}, err
	}
	cis := map[string]CI{}
	for i, l := range sortedKeys(dirs) {
		ref, ok := refs[l]
		if !ok || vec.Norm(ref) == 0 {
			continue // alone, or the others cancel out: nothing to conflict with
		}
		bo := o.Boot
		bo.Seed = o.Boot.Seed + uint64(i) // independent draws per language
		ci, err := CosineCI(by[l], ref, bo)
		if err != nil {
			return Gating{}, fmt.Errorf("language %s: %w", l, err)
		}
		cis[l] = ci
	}
	return FinishLeaveOut(dirs, cis, o)
}

// LeaveOutRefs returns each language's reference R_{-l} for the leave-out
// gate: the plain sum of the other languages' directions (RefSum, default)
// or their PCGrad consensus g*_{-l} (RefPCGrad). A lone language has no
// reference (an empty map). Errors: ErrOptions, those of LeaveOneOut.
func LeaveOutRefs(dirs map[string][]float32, o GateOptions) (map[string][]float32, error) {
	switch o.Reference {
	case "", RefSum, RefPCGrad:
	default:
		return nil, fmt.Errorf("%w: reference %q (want %q or %q)", ErrOptions, o.Reference, RefSum, RefPCGrad)
	}
	refs := map[string][]float32{}
	if len(dirs) < 2 {
		return refs, nil
	}
	if o.Reference == RefPCGrad {
		loo, err := LeaveOneOut(dirs, o.Seed)
		if err != nil {
			return nil, err
		}
		for l, r := range loo {
			refs[l] = r.Consensus
		}
		return refs, nil
	}
	// Summed in float64 in language order and rounded once, so the
	// reference's bits do not depend on map order.
	langs := sortedKeys(dirs)
	for _, l := range langs {
		var sum []float64
		for _, m := range langs {
			if m == l {
				continue
			}
			g := dirs[m]
			if sum == nil {
				sum = make([]float64, len(g))
			}
			for j, x := range g {
				sum[j] += float64(x)
			}
		}
		ref := make([]float32, len(sum))
		for j, x := range sum {
			ref[j] = float32(x)
		}
		refs[l] = ref
	}
	return refs, nil
}

// FinishLeaveOut is GateLeaveOut after the intervals: given each tested
// language's CI of cos(G_l, R_{-l}) (a language missing from cis was not
// tested: alone, or its reference is zero, and stays open) it gates the
// languages whose upper end is below 0, stands the gate down when that
// would gate every language, and computes the consensus over the open
// languages and g*_{-l} over the open languages other than l. A pipeline
// computes the intervals its own way (PoissonBoot) and finishes here.
func FinishLeaveOut(dirs map[string][]float32, cis map[string]CI, o GateOptions) (Gating, error) {
	if len(dirs) == 0 {
		return Gating{}, fmt.Errorf("%w: no languages", ErrOptions)
	}
	if len(dirs) == 1 {
		l := sortedKeys(dirs)[0]
		c, err := pcgrad.Consensus(dirs, o.Seed)
		if err != nil {
			return Gating{}, err
		}
		return Gating{Langs: []LangGate{{Lang: l, Reason: ReasonOpenAlone}}, Consensus: c,
			LeaveOut: map[string]pcgrad.Result{}}, nil
	}
	var g Gating
	var err error
	open := map[string][]float32{}
	for _, l := range sortedKeys(dirs) {
		lg := LangGate{Lang: l, Reason: ReasonOpenLeaveOut}
		if ci, ok := cis[l]; ok {
			lg.Cos = ci
			lg.Gated = ci.Hi < 0
			lg.Reason = pick(lg.Gated, ReasonGatedLeaveOut, ReasonOpenLeaveOut)
		}
		if !lg.Gated {
			open[l] = dirs[l]
		}
		g.Langs = append(g.Langs, lg)
	}
	if len(open) == 0 {
		// Every language conflicts with the others (possible with two
		// opposed languages): no consensus to trust; keep them all open
		// rather than drop everything, and say so.
		for i := range g.Langs {
			g.Langs[i].Gated = false
			g.Langs[i].Reason = ReasonOpenLeaveOut + " (every language was below 0; gate disabled)"
		}
		open = dirs
	}
	if g.Consensus, err = pcgrad.Consensus(open, o.Seed); err != nil {
		return Gating{}, err
	}
	g.LeaveOut = map[string]pcgrad.Result{}
	if len(open) >= 2 {
		looOpen, err := LeaveOneOut(open, o.Seed)
		if err != nil {
			return Gating{}, err
		}
		for l, r := range looOpen {
			g.LeaveOut[l] = r
		}
	}
	return g, nil
}

// GateAnchor gates every language whose direction conflicts with a trusted
// anchor direction (the mean sketch of a small dev set of pairs whose labels
// are trusted): the upper end of the bootstrap CI of cos(G_l, anchor) is
// below 0. The consensus is PCGrad over the open languages, plus the anchor
// (AnchorLang) when o.IncludeAnchor. Errors: ErrOptions, vec.ErrZero (zero
// anchor), and those of CosineCI and pcgrad.Consensus.
func GateAnchor(vecs [][]float32, langs []string, anchor []float32, o GateOptions) (Gating, error) {
	dirs, by, err := Means(vecs, langs)
	if err != nil {
		return Gating{}, err
	}
	if err := checkAnchor(anchor, len(vecs[0])); err != nil {
		return Gating{}, err
	}
	cis := map[string]CI{}
	for i, l := range sortedKeys(dirs) {
		bo := o.Boot
		bo.Seed = o.Boot.Seed + uint64(i)
		ci, err := CosineCI(by[l], anchor, bo)
		if err != nil {
			return Gating{}, fmt.Errorf("language %s: %w", l, err)
		}
		cis[l] = ci
	}
	return FinishAnchor(dirs, anchor, cis, o)
}

func checkAnchor(anchor []float32, k int) error {
	if len(anchor) != k {
		return fmt.Errorf("%w: anchor has length %d, vectors %d", vec.ErrDim, len(anchor), k)
	}
	if _, err := vec.NewTarget(anchor); err != nil {
		return fmt.Errorf("anchor: %w", err)
	}
	return nil
}

// FinishAnchor is GateAnchor after the intervals: cis holds every
// language's CI of cos(G_l, anchor); languages whose upper end is below 0
// are gated, and the consensus is PCGrad over the open languages (plus the
// anchor, rescaled, when o.IncludeAnchor). Errors: ErrOptions (a language
// without an interval), vec errors of the anchor, pcgrad errors.
func FinishAnchor(dirs map[string][]float32, anchor []float32, cis map[string]CI, o GateOptions) (Gating, error) {
	if len(dirs) == 0 {
		return Gating{}, fmt.Errorf("%w: no languages", ErrOptions)
	}
	if err := checkAnchor(anchor, len(dirs[sortedKeys(dirs)[0]])); err != nil {
		return Gating{}, err
	}
	var g Gating
	var err error
	open := map[string][]float32{}
	for _, l := range sortedKeys(dirs) {
		ci, ok := cis[l]
		if !ok {
			return Gating{}, fmt.Errorf("%w: language %s has no interval", ErrOptions, l)
		}
		lg := LangGate{Lang: l, Cos: ci, Gated: ci.Hi < 0}
		lg.Reason = pick(lg.Gated, ReasonGatedAnchor, ReasonOpenAnchor)
		if !lg.Gated {
			open[l] = dirs[l]
		}
		g.Langs = append(g.Langs, lg)
	}
	if o.IncludeAnchor {
		norm := 0.0
		for _, l := range sortedKeys(open) { // language order: the same bits on every run
			norm += vec.Norm(open[l])
		}
		scale := 1.0
		if len(open) > 0 && norm > 0 {
			scale = norm / float64(len(open)) / vec.Norm(anchor)
		}
		a := make([]float32, len(anchor))
		for j, x := range anchor {
			a[j] = float32(float64(x) * scale)
		}
		open[AnchorLang] = a
	}
	if len(open) == 0 {
		// Every language conflicts with the anchor and the anchor is not in
		// the consensus: the anchor itself is the only trusted direction.
		open[AnchorLang] = anchor
	}
	if g.Consensus, err = pcgrad.Consensus(open, o.Seed); err != nil {
		return Gating{}, err
	}
	return g, nil
}

// Apply overrides verdicts of gated languages: not kept, reason of the gate.
// Verdicts of open languages are returned unchanged (their reason names the
// keep rule that decided). The input is not modified.
func Apply(vs []keep.Verdict, g Gating) []keep.Verdict {
	out := make([]keep.Verdict, len(vs))
	copy(out, vs)
	for i := range out {
		if gated, why := g.Gated(out[i].Lang); gated {
			out[i].Kept = false
			out[i].Reason = why
		}
	}
	return out
}
