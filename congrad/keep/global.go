package keep

import (
	"fmt"
	"slices"
)

// Cutoff is the global-top threshold: the last kept pair in the global
// best-first order (Better). A pair is kept iff it is finite and not worse
// than Last. Keep == 0 means nothing is kept (no finite scores).
type Cutoff struct {
	Last  Scored // the worst kept pair
	Keep  int    // KeepCount(Total, ρ)
	Total int    // pairs with a finite score, over all languages
}

// Keeps reports whether it passes the cutoff.
func (c Cutoff) Keeps(it Scored) bool {
	return c.Keep > 0 && finite(it.Score) && Better(it, c.Last) <= 0
}

// GlobalCutoff computes the global-top cutoff from every pair's score. A
// distributed pipeline can compute the same value with a global Top of
// size KeepCount(Total, ρ) under Better. Errors: ErrOptions for ρ outside
// (0, 1].
func GlobalCutoff(items []Scored, rho float64) (Cutoff, error) {
	if err := (Options{Rule: GlobalTop, Rho: rho}).Validate(); err != nil {
		return Cutoff{}, err
	}
	fin := make([]Scored, 0, len(items))
	for _, it := range items {
		if finite(it.Score) {
			fin = append(fin, it)
		}
	}
	c := Cutoff{Total: len(fin), Keep: KeepCount(len(fin), rho)}
	if c.Keep == 0 {
		return c, nil
	}
	slices.SortFunc(fin, Better)
	c.Last = fin[c.Keep-1]
	return c, nil
}

// DecideWithCutoff ranks one language's items and keeps those that pass
// the global cutoff. Errors: ErrMixedLanguages, ErrDuplicate.
func DecideWithCutoff(items []Scored, c Cutoff) ([]Verdict, error) {
	sorted, nFinite, err := rank(items)
	if err != nil {
		return nil, err
	}
	return DecideRanked(sorted, 0, nFinite, Options{Rule: GlobalTop, Rho: 1}, c), nil
}

// Decide is the in-memory reference for every rule: it groups items by
// language and returns verdicts ordered by Lang, then best-first within the
// language (non-finite scores last). Errors: ErrOptions, ErrDuplicate.
func Decide(items []Scored, o Options) ([]Verdict, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	byLang := map[string][]Scored{}
	for _, it := range items {
		byLang[it.Lang] = append(byLang[it.Lang], it)
	}
	langs := make([]string, 0, len(byLang))
	for l := range byLang {
		langs = append(langs, l)
	}
	slices.Sort(langs)
	var cut Cutoff
	if o.rule() == GlobalTop {
		var err error
		if cut, err = GlobalCutoff(items, o.Rho); err != nil {
			return nil, err
		}
	}
	out := make([]Verdict, 0, len(items))
	for _, l := range langs {
		var vs []Verdict
		var err error
		if o.rule() == GlobalTop {
			vs, err = DecideWithCutoff(byLang[l], cut)
		} else {
			vs, err = DecideLanguage(byLang[l], o)
		}
		if err != nil {
			return nil, fmt.Errorf("language %q: %w", l, err)
		}
		out = append(out, vs...)
	}
	return out, nil
}
