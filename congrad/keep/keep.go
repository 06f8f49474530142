// Package keep decides which preference pairs the conflict filter keeps
// (METHOD.md §6). Every input pair gets a Verdict: its score, its rank within
// its language, the decision and a short fixed reason. Nothing is dropped
// silently: a pair with a non-finite score is not kept, gets rank 0 and
// ReasonNonFinite.
//
// Ranking: within a language, higher score first; equal scores are ordered
// by PairID ascending (byte order). global-top orders all pairs the same way,
// breaking remaining ties by Lang ascending.
package keep

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
)

// Rule names a keep rule.
type Rule string

const (
	Positive  Rule = "positive"   // score > τ (default)
	Top       Rule = "top"        // the best ρ fraction within each language
	GlobalTop Rule = "global-top" // the best ρ fraction over all languages
)

// Reasons (Verdict.Reason). Short, fixed strings, safe to group by.
const (
	ReasonAboveTau    = "score>tau"
	ReasonNotAboveTau = "score<=tau"
	ReasonTop         = "in top-rho"
	ReasonBelowTop    = "below top-rho"
	ReasonGlobalTop   = "in global top-rho"
	ReasonBelowGlobal = "below global top-rho"
	ReasonNonFinite   = "non-finite score"
)

var (
	// ErrOptions: invalid options (unknown rule, non-finite τ, ρ outside (0,1]).
	ErrOptions = errors.New("keep: invalid options")
	// ErrDuplicate: the same (Lang, PairID) appears twice.
	ErrDuplicate = errors.New("keep: duplicate pair")
	// ErrMixedLanguages: DecideLanguage got items of more than one language.
	ErrMixedLanguages = errors.New("keep: items of several languages")
)

// Options select and parametrise the rule. Zero Rule means Positive.
type Options struct {
	Rule Rule
	Tau  float64 // positive: keep score > Tau
	Rho  float64 // top, global-top: fraction kept, in (0, 1]
}

// DefaultOptions: positive, τ = 0, ρ = 0.5.
func DefaultOptions() Options { return Options{Rule: Positive, Tau: 0, Rho: 0.5} }

func (o Options) rule() Rule {
	if o.Rule == "" {
		return Positive
	}
	return o.Rule
}

// Validate checks the options that the chosen rule uses.
func (o Options) Validate() error {
	switch o.rule() {
	case Positive:
		if math.IsNaN(o.Tau) || math.IsInf(o.Tau, 0) {
			return fmt.Errorf("%w: tau=%v must be finite", ErrOptions, o.Tau)
		}
	case Top, GlobalTop:
		if !(o.Rho > 0 && o.Rho <= 1) {
			return fmt.Errorf("%w: rho=%v must be in (0, 1]", ErrOptions, o.Rho)
		}
	default:
		return fmt.Errorf("%w: unknown rule %q (want %q, %q or %q)", ErrOptions, o.Rule, Positive, Top, GlobalTop)
	}
	return nil
}

// Scored is one pair's score cos(s_i, g*).
type Scored struct {
	PairID, Lang string
	Score        float64
}

// Verdict is the filter's decision on one pair.
type Verdict struct {
	PairID, Lang string
	Score        float64
	Rank         int // 1 = best within the language; 0 for a non-finite score
	Kept         bool
	Reason       string
}

// KeepCount is how many of n ranked pairs the top rules keep:
// ceil(n·ρ·(1−1e-12)), clamped to [1, n] when n > 0 and ρ > 0, and 0
// otherwise. The 1e-12 absorbs float64 representation error, so n=10,
// ρ=0.1 keeps 1 (not 2) and n=10, ρ=0.7 keeps 7; it never matters for a
// fraction part above 1e-12 relative. Never 0 for a non-empty language.
func KeepCount(n int, rho float64) int {
	if n <= 0 || !(rho > 0) {
		return 0
	}
	if rho >= 1 {
		return n
	}
	c := int(math.Ceil(float64(n) * rho * (1 - 1e-12)))
	return max(1, min(n, c))
}

// finite reports whether x is neither NaN nor ±Inf.
func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// Better orders pairs best-first: higher score, then PairID ascending, then
// Lang ascending. Non-finite scores sort after all finite ones.
func Better(a, b Scored) int {
	fa, fb := finite(a.Score), finite(b.Score)
	switch {
	case fa && !fb:
		return -1
	case !fa && fb:
		return 1
	case fa && fb && a.Score != b.Score:
		if a.Score > b.Score {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(a.PairID, b.PairID); c != 0 {
		return c
	}
	return cmp.Compare(a.Lang, b.Lang)
}

// DecideLanguage ranks one language's items and applies positive or top.
// Verdicts come back best-first (non-finite last, by PairID). Errors:
// ErrOptions (including global-top, which needs DecideWithCutoff),
// ErrMixedLanguages, ErrDuplicate. No items: no verdicts, no error.
func DecideLanguage(items []Scored, o Options) ([]Verdict, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.rule() == GlobalTop {
		return nil, fmt.Errorf("%w: global-top needs a cutoff over all languages (GlobalCutoff, DecideWithCutoff)", ErrOptions)
	}
	sorted, nFinite, err := rank(items)
	if err != nil {
		return nil, err
	}
	return DecideRanked(sorted, 0, nFinite, o, Cutoff{}), nil
}

// DecideRanked decides a contiguous run of one language's best-first order
// (Better), so a language can be ranked in pieces: sorted is the run,
// first the 0-based position of sorted[0] in the language's order and
// nFinite the language's count of finite scores. The rule is o's; under
// global-top, c is the cutoff over all languages. The verdicts are those
// DecideLanguage (or DecideWithCutoff) gives these items on the whole
// language. o must be valid (Validate).
func DecideRanked(sorted []Scored, first, nFinite int, o Options, c Cutoff) []Verdict {
	keepN := KeepCount(nFinite, o.Rho)
	out := make([]Verdict, len(sorted))
	for j, it := range sorted {
		i := first + j
		v := Verdict{PairID: it.PairID, Lang: it.Lang, Score: it.Score}
		switch {
		case i >= nFinite:
			v.Reason = ReasonNonFinite
		case o.rule() == Positive:
			v.Rank = i + 1
			v.Kept = it.Score > o.Tau
			v.Reason = pick(v.Kept, ReasonAboveTau, ReasonNotAboveTau)
		case o.rule() == GlobalTop:
			v.Rank = i + 1
			v.Kept = c.Keeps(it)
			v.Reason = pick(v.Kept, ReasonGlobalTop, ReasonBelowGlobal)
		default: // Top
			v.Rank = i + 1
			v.Kept = i < keepN
			v.Reason = pick(v.Kept, ReasonTop, ReasonBelowTop)
		}
		out[j] = v
	}
	return out
}

func pick(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

// rank sorts a copy of one language's items best-first and counts the
// finite scores.
func rank(items []Scored) ([]Scored, int, error) {
	sorted := slices.Clone(items)
	slices.SortFunc(sorted, Better)
	n := 0
	seen := make(map[string]struct{}, len(sorted))
	for _, it := range sorted {
		if it.Lang != sorted[0].Lang {
			return nil, 0, fmt.Errorf("%w: %q and %q", ErrMixedLanguages, sorted[0].Lang, it.Lang)
		}
		if finite(it.Score) {
			n++
		}
		if _, dup := seen[it.PairID]; dup {
			return nil, 0, fmt.Errorf("%w: %q in language %q", ErrDuplicate, it.PairID, it.Lang)
		}
		seen[it.PairID] = struct{}{}
	}
	return sorted, n, nil
}
