// Package gate holds the ConGrad variants beyond the paper's pair filter
// (issue 13), as pure functions on scores and sketch-space vectors:
//
//   - noise-aware per-language thresholds τ_l, fitted to each language's
//     own score distribution (FitNoise, DecideNoiseAware);
//   - leave-own-language-out consensus g*_{-l} (LeaveOneOut) and
//     language-level gating with bootstrap confidence intervals
//     (GateLeaveOut, CosineCI; PoissonBoot is the mergeable bootstrap for
//     a distributed pipeline);
//   - anchor-gated consensus from a small trusted dev set (GateAnchor);
//   - group scoring: the mean vector of N pairs of one language or prompt
//     cluster is scored and the score applies to every member (Groups,
//     GroupScores).
//
// Every decision carries a short fixed reason string naming the rule that
// decided, so an audit can group by it. docs/METHOD.md §8 states each rule,
// its estimator and where it comes from. Nothing here imports Beam or GoMLX.
package gate

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/congrad-beam/congrad/congrad/keep"
)

// Reasons written by DecideNoiseAware (keep.Verdict.Reason).
const (
	ReasonNoiseAbove    = "score>tau_l (noise fit)"
	ReasonNoiseBelow    = "score<=tau_l (noise fit)"
	ReasonFallbackAbove = "score>tau (noise fit fallback)"
	ReasonFallbackBelow = "score<=tau (noise fit fallback)"
)

// Fallback reasons (NoiseFit.Fallback): why a language's τ_l is the
// fallback τ instead of the fitted one.
const (
	FallbackFewPairs   = "fewer finite scores than MinPairs"
	FallbackDegenerate = "no spread or no signal (sigma or mu is 0)"
)

// ErrOptions: invalid options of a gate function.
var ErrOptions = errors.New("gate: invalid options")

// NoiseOptions parametrise the per-language noise fit.
type NoiseOptions struct {
	// MinPairs: a language with fewer finite scores keeps FallbackTau
	// (the mixture is not identifiable from a handful of points).
	MinPairs int
	// MinPosterior: keep a pair when P(clean | score) > MinPosterior.
	// 0.5 is the Bayes classifier with equal costs for dropping a clean
	// pair and keeping a flipped one.
	MinPosterior float64
	FallbackTau  float64 // τ used when the fit is not usable
	MaxIter      int     // EM iterations
	Tol          float64 // stop when |Δμ|, |Δσ| and |Δη| are all below Tol
}

// DefaultNoiseOptions: MinPairs 20, MinPosterior 0.5, fallback τ 0, 500
// iterations, tolerance 1e-9.
func DefaultNoiseOptions() NoiseOptions {
	return NoiseOptions{MinPairs: 20, MinPosterior: 0.5, FallbackTau: 0, MaxIter: 500, Tol: 1e-9}
}

func (o NoiseOptions) validate() error {
	if o.MinPairs < 2 || !(o.MinPosterior > 0 && o.MinPosterior < 1) || o.MaxIter < 1 || !(o.Tol > 0) || !finite(o.FallbackTau) {
		return fmt.Errorf("%w: noise options %+v (want MinPairs >= 2, MinPosterior in (0,1), MaxIter >= 1, Tol > 0, finite FallbackTau)", ErrOptions, o)
	}
	return nil
}

// NoiseFit is one language's fitted score distribution and threshold.
//
// Model (METHOD.md §8.1): a pair's score s = cos(v_i, target) follows
//
//	(1−η)·N(μ, σ²) + η·N(−μ, σ²),  μ ≥ 0,
//
// the clean pairs around +μ and the pairs whose label is flipped around −μ
// (swapping chosen and rejected negates the DPO gradient at z = 0, hence the
// mirrored component). The threshold is where the posterior of "clean"
// equals MinPosterior p:
//
//	τ_l = σ²/(2μ) · ln( p/(1−p) · η/(1−η) ).
type NoiseFit struct {
	N                 int // finite scores used
	Mu, Sigma, Eta    float64
	Tau               float64
	Iter              int
	Converged         bool
	Fallback          string // "" when Tau comes from the fit
	LogLik            float64
	MeanScore, Spread float64 // sample mean and standard deviation of the scores
}

// Posterior is P(clean | s) under the fitted mixture.
func (f NoiseFit) Posterior(s float64) float64 {
	if f.Sigma == 0 {
		return math.NaN()
	}
	return sigmoid(logit(1-f.Eta) + 2*f.Mu*s/(f.Sigma*f.Sigma))
}

// FitNoise fits the mirrored two-component mixture to one language's scores
// by EM and returns τ_l. Non-finite scores are ignored. The M-step is closed
// form: η = 1 − mean(r), μ = mean((2r−1)s), σ² = mean(s²) − μ² (r_i the
// posterior of "clean"); μ < 0 after a step is folded back (μ → −μ,
// η → 1−η), so "clean" always means "agrees with the target".
// The scores are summed in ascending order, so the result does not depend
// on their order. Initialisation is deterministic: η₀ ∈ {0.05, 0.25, 0.45}, μ₀ =
// |mean(s)|/(1−2η₀) (the first moment under η₀), σ₀² = var(s); the start
// with the highest final likelihood wins.
func FitNoise(scores []float64, o NoiseOptions) (NoiseFit, error) {
	if err := o.validate(); err != nil {
		return NoiseFit{}, err
	}
	var s []float64
	for _, x := range scores {
		if finite(x) {
			s = append(s, x)
		}
	}
	// The fit's sums run in ascending order, so its bits do not depend on
	// the order the scores came in (a pipeline gathers them in any order).
	slices.Sort(s)
	f := NoiseFit{N: len(s), Tau: o.FallbackTau}
	if len(s) == 0 {
		f.Fallback = FallbackFewPairs
		return f, nil
	}
	n := float64(len(s))
	m1, m2 := 0.0, 0.0
	for _, x := range s {
		m1 += x
		m2 += x * x
	}
	m1, m2 = m1/n, m2/n
	variance := max(m2-m1*m1, 0)
	f.MeanScore, f.Spread = m1, math.Sqrt(variance*n/max(n-1, 1))
	if len(s) < o.MinPairs {
		f.Fallback = FallbackFewPairs
		return f, nil
	}
	if variance <= 1e-12*m2 { // constant up to rounding
		f.Fallback = FallbackDegenerate
		return f, nil
	}
	floor := 1e-12 * max(m2, 1e-300)
	// EM finds a local maximum; near η = 1/2 the start matters. Run from
	// three deterministic starts and keep the highest likelihood.
	best := NoiseFit{LogLik: math.Inf(-1)}
	for _, eta0 := range []float64{0.05, 0.25, 0.45} {
		mu, sig, eta, iter, conv := emMirrored(s, m1, m2, eta0, floor, o)
		ll := mixLogLik(s, mu, sig, eta)
		if ll > best.LogLik || math.IsInf(best.LogLik, -1) {
			best = NoiseFit{Mu: mu, Sigma: sig, Eta: eta, Iter: iter, Converged: conv, LogLik: ll}
		}
	}
	f.Mu, f.Sigma, f.Eta, f.Iter, f.Converged, f.LogLik = best.Mu, best.Sigma, best.Eta, best.Iter, best.Converged, best.LogLik
	mu, sig2, eta := f.Mu, f.Sigma*f.Sigma, f.Eta
	// μ at rounding level (≤ 1e-12·σ) is no signal either: τ_l would blow up.
	if mu <= 1e-12*f.Sigma || !finite(mu) || !finite(sig2) {
		f.Fallback = FallbackDegenerate
		return f, nil
	}
	p := o.MinPosterior
	f.Tau = sig2 / (2 * mu) * (math.Log(p/(1-p)) + math.Log(eta/(1-eta)))
	return f, nil
}

// emMirrored runs EM from η₀ and returns μ, σ, η, the iterations and
// whether it converged.
func emMirrored(s []float64, m1, m2, eta0, floor float64, o NoiseOptions) (mu, sigma, eta float64, iter int, conv bool) {
	n := float64(len(s))
	const etaMin = 1e-6
	eta = eta0
	mu = math.Abs(m1) / (1 - 2*eta)
	sig2 := max(m2-m1*m1, floor)
	for it := 1; it <= o.MaxIter; it++ {
		a, b := logit(1-eta), 2*mu/sig2
		sr, srs := 0.0, 0.0
		for _, x := range s {
			r := sigmoid(a + b*x)
			sr += r
			srs += (2*r - 1) * x
		}
		nEta := 1 - sr/n
		nMu := srs / n
		if nMu < 0 {
			nMu, nEta = -nMu, 1-nEta
		}
		nEta = min(max(nEta, etaMin), 1-etaMin)
		nSig2 := max(m2-nMu*nMu, floor)
		done := math.Abs(nMu-mu) < o.Tol && math.Abs(math.Sqrt(nSig2)-math.Sqrt(sig2)) < o.Tol && math.Abs(nEta-eta) < o.Tol
		mu, sig2, eta = nMu, nSig2, nEta
		iter = it
		if done {
			conv = true
			break
		}
	}
	return mu, math.Sqrt(sig2), eta, iter, conv
}

// mixLogLik is the mixture's log-likelihood (a diagnostic: EM never lowers it).
func mixLogLik(s []float64, mu, sigma, eta float64) float64 {
	ll := 0.0
	c := -math.Log(sigma) - 0.5*math.Log(2*math.Pi)
	for _, x := range s {
		a := math.Log(1-eta) - (x-mu)*(x-mu)/(2*sigma*sigma)
		b := math.Log(eta) - (x+mu)*(x+mu)/(2*sigma*sigma)
		m := max(a, b)
		ll += c + m + math.Log(math.Exp(a-m)+math.Exp(b-m))
	}
	return ll
}

// DecideNoiseAware fits τ_l per language and keeps a pair when its score is
// above its language's τ_l. Verdicts are ordered as keep.Decide orders them
// (language, then best-first); Reason says whether τ_l came from the fit or
// the fallback. Errors: ErrOptions, keep.ErrDuplicate.
func DecideNoiseAware(items []keep.Scored, o NoiseOptions) ([]keep.Verdict, map[string]NoiseFit, error) {
	if err := o.validate(); err != nil {
		return nil, nil, err
	}
	byLang := map[string][]keep.Scored{}
	for _, it := range items {
		byLang[it.Lang] = append(byLang[it.Lang], it)
	}
	langs := sortedKeys(byLang)
	fits := make(map[string]NoiseFit, len(langs))
	out := make([]keep.Verdict, 0, len(items))
	for _, l := range langs {
		scores := make([]float64, len(byLang[l]))
		for i, it := range byLang[l] {
			scores[i] = it.Score
		}
		f, err := FitNoise(scores, o)
		if err != nil {
			return nil, nil, err
		}
		fits[l] = f
		vs, err := keep.DecideLanguage(byLang[l], keep.Options{Rule: keep.Positive, Tau: f.Tau})
		if err != nil {
			return nil, nil, fmt.Errorf("language %q: %w", l, err)
		}
		out = append(out, f.reasons(vs)...)
	}
	return out, fits, nil
}

// DecideNoiseRanked is DecideNoiseAware on a contiguous run of one
// language's best-first order (keep.DecideRanked's arguments) under the
// language's fit f.
func DecideNoiseRanked(sorted []keep.Scored, first, nFinite int, f NoiseFit) []keep.Verdict {
	return f.reasons(keep.DecideRanked(sorted, first, nFinite, keep.Options{Rule: keep.Positive, Tau: f.Tau}, keep.Cutoff{}))
}

// reasons replaces the positive rule's reasons of vs (decided at f.Tau)
// with the noise fit's.
func (f NoiseFit) reasons(vs []keep.Verdict) []keep.Verdict {
	for i := range vs {
		if vs[i].Reason == keep.ReasonNonFinite {
			continue
		}
		if f.Fallback == "" {
			vs[i].Reason = pick(vs[i].Kept, ReasonNoiseAbove, ReasonNoiseBelow)
		} else {
			vs[i].Reason = pick(vs[i].Kept, ReasonFallbackAbove, ReasonFallbackBelow)
		}
	}
	return vs
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func pick(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

func logit(p float64) float64 { return math.Log(p / (1 - p)) }
