// Package selfreward implements the self-rewarding step of a ConGrad round
// (METHOD.md §1): sample N candidates per prompt, let the same model judge each
// candidate J times with an additive 0–5 rubric, average the scores and form a
// (best, worst) preference pair. It has no Beam and no GoMLX in it: the Beam
// transform (transforms/selfreward) and the benchmarks call the same code.
package selfreward

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Defaults from METHOD.md §1 (following the original self-rewarding recipe).
const (
	DefaultN              = 4
	DefaultJ              = 3
	DefaultTemperature    = 0.7
	DefaultTopP           = 0.9
	DefaultMinMargin      = 1.0
	DefaultMaxTokens      = 512
	DefaultJudgeMaxTokens = 256
	DefaultMaxPromptChars = 8000
	DefaultTopLogprobs    = 10
	DefaultMinScoreMass   = 0.5
)

// ErrInvalidOptions is wrapped by every error Options.Validate returns.
var ErrInvalidOptions = errors.New("selfreward: invalid options")

// Options configure one self-rewarding round. The zero value means "all
// defaults"; a zero field takes its default in WithDefaults, which is why
// greedy decoding needs its own flag instead of Temperature 0. Options travel
// inside Beam DoFns as JSON, so every field is plain data.
type Options struct {
	N int // candidates per prompt (default 4)
	J int // judgments per candidate (default 3)

	Temperature float64 // candidate sampling temperature (default 0.7)
	TopP        float64 // candidate nucleus sampling (default 0.9)
	MaxTokens   int     // candidate length limit in tokens (default 512)
	Greedy      bool    // sample candidates with temperature 0 (then N>1 only makes sense with a seeded server)

	JudgeTemperature float64 // judge sampling temperature (default: Temperature); J>1 needs >0 to average anything
	JudgeTopP        float64 // default: TopP
	JudgeMaxTokens   int     // judge answer length limit (default 256)

	// TopLogprobs asks the judge for this many top log-probabilities per token
	// so that the score can be the probability-weighted mean over the tokens
	// "0".."5" (default 10; -1 turns log-probs off for servers that reject them).
	TopLogprobs int
	// MinScoreMass is the least total probability the score tokens must carry
	// at the score position for the weighted score to be used; below it the
	// parsed number is used (default 0.5). It keeps a weighted mean from being
	// built out of a handful of unlikely digits.
	MinScoreMass float64
	// ScoreCue, when set, is written as the start of the judge's answer (only
	// with the /v1/completions API), e.g. "Score: ". The model then emits the
	// score as its first token, which is where a server that reports only the
	// first token's log-probs (our serve) can give a weighted score.
	ScoreCue string

	MinMargin       float64            // drop prompts whose best-worst margin is below this (default 1.0)
	MinMarginByLang map[string]float64 // per-language override of MinMargin

	// Rubric is the judge prompt template with the placeholders {{prompt}} and
	// {{response}} (default DefaultRubric). RubricByLang overrides it per language.
	Rubric       string
	RubricByLang map[string]string

	// LengthPenalty subtracts LengthPenalty points per 100 response tokens from
	// a candidate's mean score before ranking (0 = off). It counters judges
	// that reward length for its own sake.
	LengthPenalty float64

	MaxPromptChars int // prompts longer than this (in runes) are dead-lettered (default 8000)

	Seed int64 // every request's seed is derived from this, the prompt and the sample index
	// SeedPerRun derives request seeds from (Seed, role, index) only, not from
	// the prompt, so that requests for different prompts carry equal seeds
	// and a batching server (serve with BatchWindow) can merge them. Samples
	// stay distinct across prompts on servers whose sampling also depends on
	// the prompt, which is every LLM server and our engines.
	SeedPerRun bool
	Iteration  int    // self-rewarding round t, copied into every pair
	ModelID    string // the model M_t, copied into every pair

	// Exact takes every numeric field as given: a zero is a value, not "use
	// the default" (Temperature 0 is greedy, MinMargin 0 keeps any strict
	// preference, MinScoreMass 0 accepts any weighted score, TopLogprobs 0
	// asks for none). Validate then refuses the zeros that mean nothing
	// (N, J, TopP, MaxTokens...). Only an empty Rubric still means
	// DefaultRubric. The CLI sets it: its flags carry their defaults, so a
	// zero the user typed must reach the server as a zero.
	Exact bool
}

// WithDefaults returns a copy with every zero field set to its default.
func (o Options) WithDefaults() Options {
	if o.Exact {
		if o.Greedy {
			o.Temperature = 0
		}
		if o.Rubric == "" {
			o.Rubric = DefaultRubric
		}
		return o
	}
	if o.N == 0 {
		o.N = DefaultN
	}
	if o.J == 0 {
		o.J = DefaultJ
	}
	if o.Temperature == 0 && !o.Greedy {
		o.Temperature = DefaultTemperature
	}
	if o.Greedy {
		o.Temperature = 0
	}
	if o.TopP == 0 {
		o.TopP = DefaultTopP
	}
	if o.MaxTokens == 0 {
		o.MaxTokens = DefaultMaxTokens
	}
	if o.JudgeTemperature == 0 {
		o.JudgeTemperature = o.Temperature
		if o.JudgeTemperature == 0 {
			o.JudgeTemperature = DefaultTemperature
		}
	}
	if o.JudgeTopP == 0 {
		o.JudgeTopP = o.TopP
	}
	if o.JudgeMaxTokens == 0 {
		o.JudgeMaxTokens = DefaultJudgeMaxTokens
	}
	if o.TopLogprobs == 0 {
		o.TopLogprobs = DefaultTopLogprobs
	}
	if o.MinScoreMass == 0 {
		o.MinScoreMass = DefaultMinScoreMass
	}
	if o.MinMargin == 0 {
		o.MinMargin = DefaultMinMargin
	}
	if o.Rubric == "" {
		o.Rubric = DefaultRubric
	}
	if o.MaxPromptChars == 0 {
		o.MaxPromptChars = DefaultMaxPromptChars
	}
	return o
}

// Validate checks options after WithDefaults. Errors wrap ErrInvalidOptions.
func (o Options) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, a...))
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"Temperature", o.Temperature}, {"JudgeTemperature", o.JudgeTemperature}, {"TopP", o.TopP},
		{"JudgeTopP", o.JudgeTopP}, {"MinScoreMass", o.MinScoreMass}, {"MinMargin", o.MinMargin},
		{"LengthPenalty", o.LengthPenalty}} {
		// NaN passes every comparison below; infinities are never meant.
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			return bad("%s=%v is not a finite number", f.name, f.v)
		}
	}
	switch {
	case o.N < 2:
		return bad("N=%d: a pair needs at least 2 candidates", o.N)
	case o.J < 1:
		return bad("J=%d: need at least one judgment", o.J)
	case o.Temperature < 0 || o.JudgeTemperature < 0:
		return bad("negative temperature")
	case o.TopP <= 0 || o.TopP > 1 || o.JudgeTopP <= 0 || o.JudgeTopP > 1:
		return bad("top-p must be in (0,1]")
	case o.MaxTokens < 1 || o.JudgeMaxTokens < 1:
		return bad("max tokens must be positive")
	case o.TopLogprobs > 20:
		return bad("TopLogprobs=%d: OpenAI-compatible servers allow at most 20", o.TopLogprobs)
	case o.MinScoreMass < 0 || o.MinScoreMass > 1:
		return bad("MinScoreMass=%v not in [0,1]", o.MinScoreMass)
	case o.MinMargin < 0:
		return bad("MinMargin=%v is negative", o.MinMargin)
	case o.LengthPenalty < 0:
		return bad("LengthPenalty=%v is negative", o.LengthPenalty)
	case o.MaxPromptChars < 1:
		return bad("MaxPromptChars=%d", o.MaxPromptChars)
	}
	for lang, m := range o.MinMarginByLang {
		if m < 0 || math.IsNaN(m) || math.IsInf(m, 0) {
			return bad("MinMarginByLang[%q]=%v is negative", lang, m)
		}
	}
	if err := checkRubric(o.Rubric); err != nil {
		return bad("rubric: %v", err)
	}
	for lang, r := range o.RubricByLang {
		if err := checkRubric(r); err != nil {
			return bad("rubric for %q: %v", lang, err)
		}
	}
	return nil
}

// MinMarginFor returns the minimum margin for a language.
func (o Options) MinMarginFor(lang string) float64 {
	if m, ok := o.MinMarginByLang[strings.ToLower(lang)]; ok {
		return m
	}
	return o.MinMargin
}

// RubricFor returns the judge template for a language.
func (o Options) RubricFor(lang string) string {
	if r, ok := o.RubricByLang[strings.ToLower(lang)]; ok && r != "" {
		return r
	}
	return o.Rubric
}

// candidateSampling and judgeSampling turn Options into per-request settings.
func (o Options) candidateSampling(seed int64) SampleOptions {
	return SampleOptions{Temperature: o.Temperature, TopP: o.TopP, MaxTokens: o.MaxTokens, Seed: seed}
}

func (o Options) judgeSampling(seed int64) SampleOptions {
	tl := o.TopLogprobs
	if tl < 0 {
		tl = 0
	}
	return SampleOptions{Temperature: o.JudgeTemperature, TopP: o.JudgeTopP, MaxTokens: o.JudgeMaxTokens,
		Seed: seed, TopLogprobs: tl, ScoreCue: o.ScoreCue, MinScoreMass: o.MinScoreMass}
}
