// Package schematest makes deterministic sample records of every schema type
// for tests and benchmarks. Values exercise the awkward cases: non-ASCII text
// in several scripts, NaN (null) reference log-probs, empty and long lists.
package schematest

import (
	"fmt"
	"math"

	"github.com/congrad-beam/congrad/schemas"
)

var langs = []string{"en", "de", "zh", "ar", "hi", "sw", "ru", "ja"}

var texts = []string{
	"Explain photosynthesis simply.",
	"Erkläre die Photosynthese einfach.",
	"简单解释光合作用。",
	"اشرح عملية التمثيل الضوئي ببساطة.",
	"प्रकाश संश्लेषण को सरलता से समझाइए।",
	"Eleza usanisinuru kwa urahisi.",
	"Объясни фотосинтез просто.",
	"光合成を簡単に説明してください。",
}

// Prompts returns n prompts.
func Prompts(n int) []schemas.Prompt {
	out := make([]schemas.Prompt, n)
	for i := range out {
		out[i] = schemas.Prompt{
			ID: fmt.Sprintf("p%06d", i), Lang: langs[i%len(langs)],
			Prompt: fmt.Sprintf("%s #%d", texts[i%len(texts)], i), Source: "schematest",
		}
	}
	return out
}

// Candidates returns n candidates.
func Candidates(n int) []schemas.Candidate {
	out := make([]schemas.Candidate, n)
	for i := range out {
		scores := []float64{float64(i % 6), float64((i + 1) % 6), float64((i + 2) % 6)}
		mean := (scores[0] + scores[1] + scores[2]) / 3
		if i%7 == 3 {
			scores, mean = nil, math.NaN() // no judgment parsed
		}
		out[i] = schemas.Candidate{
			PromptID: fmt.Sprintf("p%06d", i/4), Lang: langs[(i/4)%len(langs)], Index: i % 4,
			Text: fmt.Sprintf("answer %d: %s", i, texts[i%len(texts)]), Tokens: 10 + i%50,
			Scores: scores, MeanScore: mean, ParseFailures: i % 3,
		}
	}
	return out
}

// Pairs returns n pairs; every third has unknown (NaN) reference log-probs.
func Pairs(n int) []schemas.Pair {
	out := make([]schemas.Pair, n)
	for i := range out {
		out[i] = Pair(i)
	}
	return out
}

// Pair returns the i-th sample pair, so a pipeline can generate pairs in
// parallel without holding them all.
func Pair(i int) schemas.Pair {
	p := schemas.Pair{
		PairID: fmt.Sprintf("pair-%08d", i), PromptID: fmt.Sprintf("p%06d", i),
		Lang: langs[i%len(langs)], Prompt: fmt.Sprintf("%s #%d", texts[i%len(texts)], i),
		Chosen:      fmt.Sprintf("A careful answer %d in %s.", i, langs[i%len(langs)]),
		Rejected:    fmt.Sprintf("meh %d", i),
		ChosenScore: 4.5, RejectedScore: float64(i % 4), ChosenScores: []float64{4, 5},
		RejectedScores: []float64{float64(i % 4)}, ChosenTokens: 20 + i%100, RejectedTokens: 3 + i%10,
		Iteration: 1, ModelID: "tiny-test", RefChosenLogp: -float64(i%1000) / 10, RefRejectedLogp: -12.5,
	}
	p.Margin = p.ChosenScore - p.RejectedScore
	if i%3 == 2 {
		p.RefChosenLogp, p.RefRejectedLogp = math.NaN(), math.NaN()
	}
	return p
}

// Sketches returns n sketches of dimension k.
func Sketches(n, k int) []schemas.Sketch {
	out := make([]schemas.Sketch, n)
	for i := range out {
		v := make([]float32, k)
		var ss float64
		for j := range v {
			v[j] = float32(math.Sin(float64(i*k + j))) // deterministic, sign-mixed
			ss += float64(v[j]) * float64(v[j])
		}
		out[i] = schemas.Sketch{
			PairID: fmt.Sprintf("pair-%08d", i), Lang: langs[i%len(langs)], Step: int64(i / 16),
			Values: v, Norm: math.Sqrt(ss), Loss: 0.69 + float64(i%10)/100, Z: float64(i%21-10) / 10,
			RefChosenLogp: -30.25, RefRejectedLogp: math.NaN(), ChosenTokens: 20 + i%100, RejectedTokens: 3 + i%10,
		}
	}
	return out
}

// Decisions returns n decisions.
func Decisions(n int) []schemas.Decision {
	out := make([]schemas.Decision, n)
	for i := range out {
		kept := i%2 == 0
		reason := "score>tau"
		if !kept {
			reason = "score<=tau"
		}
		out[i] = schemas.Decision{
			PairID: fmt.Sprintf("pair-%08d", i), Lang: langs[i%len(langs)],
			Score: float64(i%201-100) / 100, Rank: 1 + i/len(langs), Kept: kept, Reason: reason,
		}
	}
	return out
}

// DeadLetters returns n dead letters, including Row == -1 (unknown row).
func DeadLetters(n int) []schemas.DeadLetter {
	out := make([]schemas.DeadLetter, n)
	for i := range out {
		out[i] = schemas.DeadLetter{
			Stage: "read", Source: fmt.Sprintf("file-%d.jsonl", i%3), Row: int64(i) - 1,
			Reason: "malformed json", Payload: fmt.Sprintf("{\"id\": %d", i),
		}
	}
	return out
}
