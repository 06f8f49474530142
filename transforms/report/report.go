// Package report assembles a ConGrad run report (report.json) and the pictures
// a person reads instead of it: the L×L conflict heatmap, per-language score
// histograms with the keep threshold, and the kept fraction per language.
//
// The Report struct is plain data; the Beam side (Write) gathers its pieces
// from small per-language summaries as side inputs, so nothing here holds
// per-pair data.
package report

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
)

// Version of the report.json layout.
const Version = 1

// Count is one cell of the accounting table: rows of a stage in a language
// that ended in an outcome ("in", "kept", "dropped", "dead", ...). Lang is
// "*" when the rows carry no language (e.g. unreadable input lines).
type Count struct {
	Stage   string `json:"stage"`
	Lang    string `json:"lang"`
	Outcome string `json:"outcome"`
	N       int64  `json:"n"`
}

// Reason counts dead-letter rows by stage and kind of reason (the reason's
// code, such as "drop:margin" or "orphan_sketch", without the row's details),
// with a few of the full reasons as examples.
type Reason struct {
	Stage    string   `json:"stage"`
	Kind     string   `json:"kind"`
	N        int64    `json:"n"`
	Examples []string `json:"examples"` // up to MaxExamples distinct reasons, smallest first
}

// MaxExamples is the number of example reasons kept per kind.
const MaxExamples = 3

// Language is what the report knows about one language.
type Language struct {
	Lang      string    `json:"lang"`
	Pairs     int64     `json:"pairs"`     // pairs with a valid sketch that were scored
	Kept      int64     `json:"kept"`      // pairs kept by the rule
	Norm      float64   `json:"g_norm"`    // ||G_l||
	Cutoff    float64   `json:"threshold"` // score a pair must exceed (positive) or reach (top rules)
	Quantiles []float64 `json:"quantiles"` // scores at QuantileLevels
	Histogram []int64   `json:"histogram"` // score counts over HistBins equal bins of [-1, 1]
	Order     []string  `json:"pcgrad_order"`
	// The audit of the method options (METHOD.md §8.5); absent under the
	// default options, so a default run's report is unchanged.
	ScoreType string    `json:"score_type,omitempty"` // pair | group:N
	Target    string    `json:"target,omitempty"`     // what the scores were measured against
	RuleUsed  string    `json:"rule,omitempty"`       // the threshold rule with its parameter
	Noise     *NoiseFit `json:"noise_fit,omitempty"`  // keep=noise-aware: this language's fit
	Gate      *Gate     `json:"gate,omitempty"`       // gate=leave-out|anchor: this language's verdict
}

// NoiseFit is the noise-aware rule's fit of one language (METHOD.md §8.1):
// scores ~ (1−η)·N(μ, σ²) + η·N(−μ, σ²), keep score > τ_l. Fallback says
// why τ_l is the fallback τ instead ("" when it comes from the fit).
type NoiseFit struct {
	N         int     `json:"n"`
	Mu        float64 `json:"mu"`
	Sigma     float64 `json:"sigma"`
	Eta       float64 `json:"eta"`
	Tau       float64 `json:"tau"`
	Iter      int     `json:"iterations"`
	Converged bool    `json:"converged"`
	Fallback  string  `json:"fallback,omitempty"`
}

// Gate is one language's language-level gate (METHOD.md §8.2, §8.3):
// cos(G_l, reference) with its bootstrap interval, the verdict and why.
// Cos, Lo and Hi are 0 when the language was not tested (Reason says why).
type Gate struct {
	Lang      string  `json:"lang"`
	Kind      string  `json:"gate"`      // leave-out | anchor
	Reference string  `json:"reference"` // what G_l was compared with
	Cos       float64 `json:"cos"`
	Lo        float64 `json:"ci_lo"`
	Hi        float64 `json:"ci_hi"`
	N         int     `json:"pairs"`
	Gated     bool    `json:"gated"`
	Reason    string  `json:"reason"`
	Target    string  `json:"target"` // what the language's pairs were scored against
}

// QuantileLevels are the levels of Language.Quantiles.
var QuantileLevels = []float64{0, 0.1, 0.25, 0.5, 0.75, 0.9, 1}

// HistBins is the number of equal-width score bins over [-1, 1].
const HistBins = 40

// Report is report.json.
type Report struct {
	Version     int               `json:"version"`
	Options     map[string]string `json:"options"` // the run's options, as given
	Rule        string            `json:"keep_rule"`
	Langs       []string          `json:"langs"` // order of Conflict rows and columns
	Languages   []Language        `json:"languages"`
	Conflict    [][]float64       `json:"conflict_matrix"` // cos(G_i, G_j)
	Projections int               `json:"pcgrad_projections"`
	Consensus   []float32         `json:"consensus"` // g*
	ConsNorm    float64           `json:"consensus_norm"`
	Counts      []Count           `json:"counts"`
	DeadLetters []Reason          `json:"dead_letters"`
	// Accounting: Totals[stage] = {"in": ..., "kept": ..., ...} summed over languages.
	Totals map[string]map[string]int64 `json:"totals"`
	// Gates is the table of language gates (gate=leave-out|anchor), one
	// row per language; absent without a gate.
	Gates []Gate `json:"language_gates,omitempty"`
}

// Finish sorts every list into a canonical order and fills Totals, so the
// same run always marshals to the same bytes.
func (r *Report) Finish() {
	r.Version = Version
	sort.Slice(r.Counts, func(i, j int) bool {
		a, b := r.Counts[i], r.Counts[j]
		if a.Stage != b.Stage {
			return a.Stage < b.Stage
		}
		if a.Lang != b.Lang {
			return a.Lang < b.Lang
		}
		return a.Outcome < b.Outcome
	})
	sort.Slice(r.DeadLetters, func(i, j int) bool {
		a, b := r.DeadLetters[i], r.DeadLetters[j]
		if a.Stage != b.Stage {
			return a.Stage < b.Stage
		}
		return a.Kind < b.Kind
	})
	sort.Slice(r.Languages, func(i, j int) bool { return r.Languages[i].Lang < r.Languages[j].Lang })
	sort.Slice(r.Gates, func(i, j int) bool { return r.Gates[i].Lang < r.Gates[j].Lang })
	r.Totals = map[string]map[string]int64{}
	for _, c := range r.Counts {
		if r.Totals[c.Stage] == nil {
			r.Totals[c.Stage] = map[string]int64{}
		}
		r.Totals[c.Stage][c.Outcome] += c.N
	}
}

// Marshal returns report.json's bytes. Non-finite floats (a zero direction's
// cosine) become null through jsonFloat, since JSON has no NaN.
func (r *Report) Marshal() ([]byte, error) {
	c := *r
	c.Conflict = nil
	type alias Report
	raw := struct {
		*alias
		Conflict [][]*float64 `json:"conflict_matrix"`
	}{alias: (*alias)(&c)}
	for _, row := range r.Conflict {
		out := make([]*float64, len(row))
		for j, v := range row {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				v := v
				out[j] = &v
			}
		}
		raw.Conflict = append(raw.Conflict, out)
	}
	for i := range c.Languages {
		l := &c.Languages[i]
		l.Norm, l.Cutoff = finite(l.Norm), finite(l.Cutoff)
		for j := range l.Quantiles {
			l.Quantiles[j] = finite(l.Quantiles[j])
		}
	}
	c.ConsNorm = finite(c.ConsNorm)
	if r.Gates != nil {
		c.Gates = make([]Gate, len(r.Gates))
		for i, g := range r.Gates {
			g.Cos, g.Lo, g.Hi = finite(g.Cos), finite(g.Lo), finite(g.Hi)
			c.Gates[i] = g
		}
	}
	for i := range c.Languages {
		l := &c.Languages[i]
		if l.Noise != nil {
			n := *l.Noise
			n.Mu, n.Sigma, n.Eta, n.Tau = finite(n.Mu), finite(n.Sigma), finite(n.Eta), finite(n.Tau)
			l.Noise = &n
		}
		if l.Gate != nil {
			g := *l.Gate
			g.Cos, g.Lo, g.Hi = finite(g.Cos), finite(g.Lo), finite(g.Hi)
			l.Gate = &g
		}
	}
	b, err := json.MarshalIndent(raw, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("report: marshal: %w", err)
	}
	return append(b, '\n'), nil
}

// finite maps NaN and ±Inf to 0 for JSON; the matrix keeps them as null.
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

// Quantiles returns the scores at QuantileLevels of sorted (ascending)
// scores, by the nearest-rank rule (no interpolation, so the values are
// scores that occurred).
func Quantiles(sorted []float64) []float64 {
	if len(sorted) == 0 {
		return nil
	}
	out := make([]float64, len(QuantileLevels))
	for i, q := range QuantileLevels {
		idx := int(math.Ceil(q*float64(len(sorted)))) - 1
		if idx < 0 {
			idx = 0
		}
		out[i] = sorted[idx]
	}
	return out
}

// Bin returns the histogram bin of a score in [-1, 1] (clamped).
func Bin(score float64) int {
	b := int(math.Floor((score + 1) / 2 * HistBins))
	if b < 0 {
		return 0
	}
	if b >= HistBins {
		return HistBins - 1
	}
	return b
}
