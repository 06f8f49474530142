package gate

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/congrad-beam/congrad/congrad/keep"
)

// mirrored draws n scores from (1−η)N(μ,σ²) + ηN(−μ,σ²) and returns which
// were drawn from the clean component.
func mirrored(n int, mu, sigma, eta float64, seed uint64) ([]float64, []bool) {
	rng := rand.New(rand.NewPCG(seed, 7))
	s := make([]float64, n)
	clean := make([]bool, n)
	for i := range s {
		clean[i] = rng.Float64() >= eta
		m := mu
		if !clean[i] {
			m = -mu
		}
		s[i] = m + sigma*rng.NormFloat64()
	}
	return s, clean
}

func bayesTau(mu, sigma, eta, p float64) float64 {
	return sigma * sigma / (2 * mu) * (math.Log(p/(1-p)) + math.Log(eta/(1-eta)))
}

func TestFitNoiseRecoversMixture(t *testing.T) {
	for _, c := range []struct {
		name           string
		mu, sigma, eta float64
		n              int
	}{
		{"well separated, 10% noise", 1, 0.4, 0.10, 4000},
		{"well separated, 30% noise", 1, 0.4, 0.30, 4000},
		{"overlapping, 20% noise", 0.5, 0.5, 0.20, 20000},
		{"score scale of the study", 0.08, 0.05, 0.25, 20000},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, _ := mirrored(c.n, c.mu, c.sigma, c.eta, 3)
			f, err := FitNoise(s, DefaultNoiseOptions())
			if err != nil {
				t.Fatal(err)
			}
			if f.Fallback != "" || !f.Converged {
				t.Fatalf("fit not usable: %+v", f)
			}
			if math.Abs(f.Eta-c.eta) > 0.04 || math.Abs(f.Mu-c.mu)/c.mu > 0.1 || math.Abs(f.Sigma-c.sigma)/c.sigma > 0.1 {
				t.Errorf("fit μ=%.4f σ=%.4f η=%.4f, want ≈ %.4f %.4f %.4f", f.Mu, f.Sigma, f.Eta, c.mu, c.sigma, c.eta)
			}
			want := bayesTau(c.mu, c.sigma, c.eta, 0.5)
			if math.Abs(f.Tau-want) > 0.1*c.sigma {
				t.Errorf("τ = %.4f, want ≈ %.4f (Bayes threshold of the true mixture)", f.Tau, want)
			}
			if got := f.Posterior(f.Tau); math.Abs(got-0.5) > 1e-9 {
				t.Errorf("posterior at τ = %v, want 0.5", got)
			}
		})
	}
}

// The fitted threshold misclassifies no more pairs than τ = 0 (the
// positive rule) on mirrored mixtures: it is the estimated Bayes rule.
func TestFitNoiseBeatsZeroThreshold(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		eta := 0.05 + 0.08*float64(seed)
		s, clean := mirrored(5000, 0.6, 0.5, eta, seed)
		f, err := FitNoise(s, DefaultNoiseOptions())
		if err != nil {
			t.Fatal(err)
		}
		errs := func(tau float64) int {
			n := 0
			for i, x := range s {
				if (x > tau) != clean[i] {
					n++
				}
			}
			return n
		}
		if got, zero := errs(f.Tau), errs(0); got > zero+len(s)/200 {
			t.Errorf("seed %d η=%.2f: τ=%.3f misclassifies %d, τ=0 misclassifies %d", seed, eta, f.Tau, got, zero)
		}
	}
}

func TestFitNoiseLikelihoodNotBelowStart(t *testing.T) {
	s, _ := mirrored(3000, 0.3, 0.4, 0.2, 11)
	f, err := FitNoise(s, DefaultNoiseOptions())
	if err != nil {
		t.Fatal(err)
	}
	var m1, m2 float64
	for _, x := range s {
		m1 += x
		m2 += x * x
	}
	m1, m2 = m1/float64(len(s)), m2/float64(len(s))
	start := mixLogLik(s, math.Abs(m1)/0.5, math.Sqrt(m2-m1*m1), 0.25)
	if f.LogLik < start-1e-6 {
		t.Errorf("EM lowered the log-likelihood: %v < start %v", f.LogLik, start)
	}
}

func TestFitNoiseStricterPosteriorRaisesTau(t *testing.T) {
	s, _ := mirrored(3000, 0.5, 0.5, 0.2, 5)
	prev := math.Inf(-1)
	for _, p := range []float64{0.2, 0.5, 0.8, 0.95} {
		o := DefaultNoiseOptions()
		o.MinPosterior = p
		f, err := FitNoise(s, o)
		if err != nil {
			t.Fatal(err)
		}
		if !(f.Tau > prev) {
			t.Errorf("MinPosterior %.2f: τ = %v not above %v", p, f.Tau, prev)
		}
		prev = f.Tau
	}
}

func TestFitNoiseFallbacksAndErrors(t *testing.T) {
	o := DefaultNoiseOptions()
	o.FallbackTau = 0.03
	for _, c := range []struct {
		name   string
		scores []float64
		want   string
	}{
		{"empty", nil, FallbackFewPairs},
		{"few", []float64{0.1, 0.2, -0.1}, FallbackFewPairs},
		{"few finite", append(slices.Repeat([]float64{math.NaN()}, 50), 0.1, 0.2), FallbackFewPairs},
		{"constant", slices.Repeat([]float64{0.2}, 50), FallbackDegenerate},
		{"symmetric around 0", func() []float64 {
			var s []float64
			for i := 0; i < 50; i++ {
				s = append(s, float64(i+1), -float64(i+1))
			}
			return s
		}(), FallbackDegenerate},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := FitNoise(c.scores, o)
			if err != nil {
				t.Fatal(err)
			}
			if f.Fallback != c.want || f.Tau != o.FallbackTau {
				t.Errorf("fallback %q τ=%v, want %q τ=%v (fit %+v)", f.Fallback, f.Tau, c.want, o.FallbackTau, f)
			}
		})
	}
	for _, bad := range []NoiseOptions{{}, {MinPairs: 20, MinPosterior: 1, MaxIter: 5, Tol: 1e-9}, {MinPairs: 20, MinPosterior: 0.5, MaxIter: 5, Tol: 0}} {
		if _, err := FitNoise([]float64{1, 2}, bad); !errors.Is(err, ErrOptions) {
			t.Errorf("options %+v: err = %v, want ErrOptions", bad, err)
		}
	}
}

func TestDecideNoiseAware(t *testing.T) {
	var items []keep.Scored
	noisy, _ := mirrored(400, 0.5, 0.4, 0.3, 21)
	cleanish, _ := mirrored(400, 0.5, 0.4, 0.02, 22)
	for i, s := range noisy {
		items = append(items, keep.Scored{PairID: id(i), Lang: "noisy", Score: s})
	}
	for i, s := range cleanish {
		items = append(items, keep.Scored{PairID: id(i), Lang: "clean", Score: s})
	}
	items = append(items, keep.Scored{PairID: "a", Lang: "tiny", Score: 0.2}, keep.Scored{PairID: "b", Lang: "tiny", Score: -0.2},
		keep.Scored{PairID: "nan", Lang: "clean", Score: math.NaN()})
	vs, fits, err := DecideNoiseAware(items, DefaultNoiseOptions())
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != len(items) {
		t.Fatalf("%d verdicts for %d items", len(vs), len(items))
	}
	if fits["tiny"].Fallback != FallbackFewPairs || fits["clean"].Fallback != "" || fits["noisy"].Fallback != "" {
		t.Errorf("fallbacks: %+v", fits)
	}
	// A nearly clean language gets a lower threshold than a noisy one with
	// the same signal: it has fewer flips to remove.
	if !(fits["clean"].Tau < fits["noisy"].Tau) {
		t.Errorf("τ clean %v not below τ noisy %v", fits["clean"].Tau, fits["noisy"].Tau)
	}
	for _, v := range vs {
		f := fits[v.Lang]
		switch {
		case math.IsNaN(v.Score):
			if v.Kept || v.Reason != keep.ReasonNonFinite {
				t.Errorf("non-finite verdict %+v", v)
			}
		case v.Kept != (v.Score > f.Tau):
			t.Errorf("%s/%s: kept %v with score %v, τ_l %v", v.Lang, v.PairID, v.Kept, v.Score, f.Tau)
		case f.Fallback == "" && v.Reason != pick(v.Kept, ReasonNoiseAbove, ReasonNoiseBelow),
			f.Fallback != "" && v.Reason != pick(v.Kept, ReasonFallbackAbove, ReasonFallbackBelow):
			t.Errorf("%s/%s: reason %q", v.Lang, v.PairID, v.Reason)
		}
	}
	if _, _, err := DecideNoiseAware(append(items, items[0]), DefaultNoiseOptions()); !errors.Is(err, keep.ErrDuplicate) {
		t.Errorf("duplicate: err = %v", err)
	}
}

func id(i int) string {
	return string(rune('A'+i/26/26%26)) + string(rune('A'+i/26%26)) + string(rune('A'+i%26))
}

// FitNoise's result does not depend on the order of the scores (a pipeline
// gathers a language's scores in any order), down to the last bit; and a
// language decided in pieces (DecideNoiseRanked) gets DecideNoiseAware's
// verdicts.
func TestFitNoiseOrderFreeAndRanked(t *testing.T) {
	s, _ := mirrored(3000, 0.3, 0.5, 0.2, 11)
	s = append(s, math.NaN(), math.Inf(1))
	o := DefaultNoiseOptions()
	want, err := FitNoise(s, o)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 3 {
		rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
		got, err := FitNoise(s, o)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("fit changes with the order of the scores:\n%+v\n%+v", got, want)
		}
	}
	items := make([]keep.Scored, len(s))
	for i, x := range s {
		items[i] = keep.Scored{PairID: id(i), Lang: "en", Score: x}
	}
	whole, fits, err := DecideNoiseAware(items, o)
	if err != nil {
		t.Fatal(err)
	}
	sorted := slices.Clone(items)
	slices.SortFunc(sorted, keep.Better)
	var pieces []keep.Verdict
	for first := 0; first < len(sorted); first += 700 {
		pieces = append(pieces, DecideNoiseRanked(sorted[first:min(first+700, len(sorted))], first, 3000, fits["en"])...)
	}
	same := func(a, b keep.Verdict) bool { // NaN scores compare by bits
		return math.Float64bits(a.Score) == math.Float64bits(b.Score) && a.PairID == b.PairID && a.Rank == b.Rank &&
			a.Kept == b.Kept && a.Reason == b.Reason && a.Lang == b.Lang
	}
	if !slices.EqualFunc(whole, pieces, same) {
		t.Fatal("DecideNoiseRanked in pieces differs from DecideNoiseAware")
	}
}
