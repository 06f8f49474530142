package selfreward

import (
	"fmt"
	"math"
	"strings"

	"github.com/congrad-beam/congrad/schemas"
)

// Drop reasons: a prompt that yields no pair leaves with one of these codes
// as the first word of its reason, so counters and reports can group them.
const (
	DropEmpty        = "drop:empty"          // fewer than 2 candidates have a non-empty response
	DropTooFewScored = "drop:too_few_scored" // fewer than 2 candidates have a score
	DropAllTie       = "drop:tie"            // every scored candidate has the same score
	DropMargin       = "drop:margin"         // best-worst margin below min_margin
	DropIdentical    = "drop:identical"      // best and worst responses have the same text
)

// Dead-letter reason codes for prompts that could not be processed.
const (
	InvalidEmpty   = "invalid:empty_prompt"
	InvalidTooLong = "invalid:too_long"
	InvalidNoID    = "invalid:no_id"
	BackendFailed  = "backend:error"
)

// RankScore is the score a candidate is ranked by: its mean judge score less
// the optional length penalty. NaN when the candidate has no score.
func RankScore(c schemas.Candidate, lengthPenalty float64) float64 {
	if math.IsNaN(c.MeanScore) || len(c.Scores) == 0 {
		return math.NaN()
	}
	return c.MeanScore - lengthPenalty*float64(c.Tokens)/100
}

// IsEmptyResponse reports whether a candidate's text is empty or only
// whitespace. Such a response teaches nothing as either side of a pair, and
// the gradient stage (gpu/dpo) refuses a pair with an empty response, so it
// must never be paired.
func IsEmptyResponse(text string) bool { return strings.TrimSpace(text) == "" }

// FormPair picks the best and the worst scored candidate of one prompt,
// ignoring candidates with an empty response (IsEmptyResponse) whatever their
// scores. Ties go to the lower candidate index, so the result never depends
// on order of arrival. It returns either a pair or a drop reason ("drop:..."
// plus detail).
func FormPair(p schemas.Prompt, cands []schemas.Candidate, o Options) (schemas.Pair, string) {
	best, worst := -1, -1
	var bs, ws float64
	scored, empty := 0, 0
	for i, c := range cands {
		if IsEmptyResponse(c.Text) {
			empty++
			continue
		}
		s := RankScore(c, o.LengthPenalty)
		if math.IsNaN(s) {
			continue
		}
		scored++
		if best < 0 || s > bs || (s == bs && c.Index < cands[best].Index) {
			best, bs = i, s
		}
		if worst < 0 || s < ws || (s == ws && c.Index < cands[worst].Index) {
			worst, ws = i, s
		}
	}
	min := o.MinMarginFor(p.Lang)
	switch {
	case empty > 0 && len(cands)-empty < 2:
		// Checked before scoring so that the reason names the real cause:
		// an empty candidate was never a candidate for the pair. Without
		// empties, too few candidates stays a too_few_scored drop as before.
		return schemas.Pair{}, fmt.Sprintf("%s: %d of %d candidates have an empty response", DropEmpty, empty, len(cands))
	case scored < 2:
		return schemas.Pair{}, fmt.Sprintf("%s: %d of %d candidates scored", DropTooFewScored, scored, len(cands))
	case bs == ws:
		return schemas.Pair{}, fmt.Sprintf("%s: all %d scored candidates at %.3g", DropAllTie, scored, bs)
	case bs-ws < min:
		return schemas.Pair{}, fmt.Sprintf("%s: margin %.3g < min_margin %.3g", DropMargin, bs-ws, min)
	case cands[best].Text == cands[worst].Text:
		return schemas.Pair{}, fmt.Sprintf("%s: candidates %d and %d are the same text", DropIdentical, cands[best].Index, cands[worst].Index)
	}
	c, r := cands[best], cands[worst]
	return schemas.Pair{
		PairID:          PairID(p, o.Iteration),
		PromptID:        p.ID,
		Lang:            p.Lang,
		Prompt:          p.Prompt,
		Chosen:          c.Text,
		Rejected:        r.Text,
		ChosenScore:     bs,
		RejectedScore:   ws,
		Margin:          bs - ws,
		ChosenScores:    append([]float64(nil), c.Scores...),
		RejectedScores:  append([]float64(nil), r.Scores...),
		ChosenTokens:    c.Tokens,
		RejectedTokens:  r.Tokens,
		Iteration:       o.Iteration,
		ModelID:         o.ModelID,
		RefChosenLogp:   math.NaN(),
		RefRejectedLogp: math.NaN(),
	}, ""
}

// PairID is stable across runs: one pair per prompt, language and round.
func PairID(p schemas.Prompt, iteration int) string {
	return fmt.Sprintf("%s/%s/t%d", p.Lang, p.ID, iteration)
}

// MeanScore averages the parsed scores; NaN for none.
func MeanScore(scores []float64) float64 {
	if len(scores) == 0 {
		return math.NaN()
	}
	var s float64
	for _, v := range scores {
		s += v
	}
	return s / float64(len(scores))
}
