package experiment

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/congrad-beam/congrad/train"
)

// Task v2 (issue 13): the judge's noise falls with the quality gap
// (Bradley–Terry) and is larger in low-resource languages; conflict
// languages carry a partial, language-specific bias; responses are sampled
// from the current policy; after round 0 the policy judges its own samples.
// docs/EXPERIMENTS.md ("Task v2") gives the reasons for each constant.
const (
	// TempHigh and TempLow are the Bradley–Terry temperatures of the
	// high-resource (and conflict) and low-resource judges. With 4 uniform
	// candidates and the best-vs-worst pair they give about 6% and 29%
	// wrong labels, close to v1's flat 5% and 30%.
	TempHigh = 1.0
	TempLow  = 4.0
)

// DefaultTaskV2 is the self-rewarding task: per round, the listed number of
// fresh prompts per seen language, 4 sampled responses each, 3 rounds.
func DefaultTaskV2() Task {
	return Task{
		Version: "v2",
		Langs: []Lang{
			{Code: "h1", Pairs: 300, Temp: TempHigh, Kind: "high"},
			{Code: "h2", Pairs: 300, Temp: TempHigh, Kind: "high"},
			{Code: "h3", Pairs: 300, Temp: TempHigh, Kind: "high"},
			{Code: "l1", Pairs: 120, Temp: TempLow, Kind: "low"},
			{Code: "l2", Pairs: 120, Temp: TempLow, Kind: "low"},
			// Each conflict judge reverses three symbols of its own (ranks of
			// the shared weights; 9 = best): about 30% of best-vs-worst pairs
			// of uniform candidates disagree with the shared rule without any
			// judge noise, c1 and c2 on disjoint symbols.
			{Code: "c1", Pairs: 300, Temp: TempHigh, Conflict: true, Bias: []int{9, 6, 3}, Kind: "conflict"},
			{Code: "c2", Pairs: 300, Temp: TempHigh, Conflict: true, Bias: []int{7, 4, 0}, Kind: "conflict"},
			{Code: "u1", Kind: "unseen"},
			{Code: "u2", Kind: "unseen"},
		},
		Symbols: 10, PromptLen: 6, RespLen: 6, EvalPairs: 200, Seed: 20260,
		Candidates: 4, Rounds: 3,
	}
}

// Prompts are the fresh prompts of language li in a round: Pairs random
// symbol strings, seeded by (task seed, data seed, round, language).
func (t Task) Prompts(dataSeed uint64, round, li int) [][]int {
	rng := rand.New(rand.NewPCG(t.Seed^dataSeed, uint64(0x70720000+round*1000+li))) // "pr"
	out := make([][]int, t.Langs[li].Pairs)
	for i := range out {
		out[i] = make([]int, t.PromptLen)
		for j := range out[i] {
			out[i][j] = rng.IntN(t.Symbols)
		}
	}
	return out
}

// distinct returns the indices of the first occurrence of every distinct
// candidate (sampled responses repeat once the policy sharpens).
func distinct(cands [][]int) []int {
	seen := map[string]bool{}
	var out []int
	for i, c := range cands {
		k := fmt.Sprint(c)
		if !seen[k] {
			seen[k] = true
			out = append(out, i)
		}
	}
	return out
}

// BTJudge is the synthetic judge of round 0: it scores each candidate
// q_J(y)/temp + Gumbel noise and returns the best and the worst of the
// distinct candidates and the gap of their scores (its confidence). For
// two candidates the label is right with probability σ(gap/temp) exactly
// (the difference of two Gumbels is logistic); for more it is the
// Plackett–Luce ranking with the same pairwise law. ok is false when fewer
// than two candidates are distinct.
func BTJudge(rng *rand.Rand, wj []float64, temp float64, cands [][]int) (best, worst int, margin float64, ok bool) {
	return pickBestWorst(distinct(cands), func(i int) float64 {
		return quality(wj, cands[i])/temp - math.Log(-math.Log(1-rng.Float64()))
	})
}

// pickBestWorst scores the candidates idx once each and returns the indices
// with the highest and lowest score (ties: the earlier one).
func pickBestWorst(idx []int, score func(int) float64) (best, worst int, margin float64, ok bool) {
	if len(idx) < 2 {
		return 0, 0, 0, false
	}
	s := make([]float64, len(idx))
	for k, i := range idx {
		s[k] = score(i)
	}
	b, w := 0, 0
	for k := range s {
		if s[k] > s[b] {
			b = k
		}
		if s[k] < s[w] {
			w = k
		}
	}
	if b == w { // every score equal: keep the first two in order
		w = 1
	}
	return idx[b], idx[w], s[b] - s[w], true
}

// candidateExample builds the judged pair of one prompt with its ground
// truth under the shared rule and the language's own judge weights.
func (t Task) candidateExample(li, round, i int, prompt, chosen, rejected []int, margin float64) Example {
	l := t.Langs[li]
	wt, wj := t.TrueWeights(), t.JudgeWeights(li)
	gap := quality(wt, chosen) - quality(wt, rejected)
	if math.Abs(gap) < 1e-9 {
		gap = 0
	}
	return Example{
		Pair: train.Pair{ID: fmt.Sprintf("r%d-%s-%04d", round, l.Code, i), Lang: l.Code, Prompt: t.text(li, prompt),
			Chosen: t.text(li, chosen), Rejected: t.text(li, rejected)},
		CleanChosenFirst: gap > 0, LabelCorrect: gap > 0, JudgeMargin: margin,
		Round: round, TrueGap: gap, OwnCorrect: quality(wj, chosen)-quality(wj, rejected) > 1e-9,
	}
}

// symbols maps a response written in language li back to its symbols.
func (t Task) symbols(li int, text string) []int {
	out := make([]int, len(text))
	for i := range text {
		out[i] = int(text[i]) - 33 - li*t.Symbols
	}
	return out
}
