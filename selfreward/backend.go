package selfreward

import (
	"context"
	"errors"
	"math"
)

// SampleOptions are the settings of one generation or judging request.
type SampleOptions struct {
	Temperature float64
	TopP        float64
	MaxTokens   int
	Seed        int64 // sample i of a request uses Seed+i when the server needs one request per sample
	// TopLogprobs > 0 asks for that many alternatives per generated token.
	TopLogprobs int
	// ScoreCue is the start of the judge's answer, sent as part of the prompt
	// (completions API only); the returned text is prefixed with it.
	ScoreCue string
	// MinScoreMass: see Options.MinScoreMass.
	MinScoreMass float64
}

// Completion is one sampled response.
type Completion struct {
	Text         string
	Tokens       int    // response length in tokens (from the server's usage when it can be split per choice)
	FinishReason string // "stop", "length", ... as the server says
	Logprobs     []TokenLogprob
}

// Judgment is one judge answer and the score read from it.
type Judgment struct {
	Text        string
	Parsed      float64 // the number in the text; NaN when none could be read
	ProbScore   float64 // probability-weighted score over "0".."5"; NaN without usable log-probs
	ScoreMass   float64 // probability the score tokens carried at the score position
	OK          bool    // a score is available (Score is valid)
	Score       float64 // ProbScore when available, else Parsed; NaN when !OK
	ParseError  string  // why no score, when !OK
	FinishLimit bool    // the answer was cut at the token limit
}

// Backend generates and judges. Implementations must be safe for concurrent
// use and deterministic for a fixed seed where the model allows it. An error
// means the request failed after the backend's own retries; the prompt then
// goes to the dead-letter output with the error as its reason.
type Backend interface {
	Generate(ctx context.Context, prompt string, n int, o SampleOptions) ([]Completion, error)
	Judge(ctx context.Context, judgePrompt string, j int, o SampleOptions) ([]Judgment, error)
}

// ErrShortResponse is returned when a backend gives fewer samples than asked.
var ErrShortResponse = errors.New("backend returned fewer samples than requested")

// JudgmentFrom parses a judge completion: the text gives the number; the
// log-probs of the token that holds the number's first digit, when the server
// sent them, give the probability-weighted score (METHOD.md §1).
func JudgmentFrom(c Completion, minMass float64) Judgment {
	j := Judgment{Text: c.Text, Parsed: math.NaN(), ProbScore: math.NaN(), Score: math.NaN(), FinishLimit: c.FinishReason == "length"}
	m, err := ParseScore(c.Text)
	if err != nil {
		j.ParseError = err.Error()
		return j
	}
	j.Parsed = m.Score
	j.Score, j.OK = m.Score, true
	if tok, found := tokenAt(c.Logprobs, m.Offset); found && m.Score == math.Trunc(m.Score) {
		if ps, mass, ok := WeightedScore(tok.Top, minMass); ok {
			j.ProbScore, j.Score = ps, ps
			j.ScoreMass = mass
		} else {
			j.ScoreMass = mass
		}
	}
	return j
}
