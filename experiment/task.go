// Package experiment is the controlled multilingual preference task on which
// ConGrad is validated against joint training (issue 7): synthetic languages
// whose true preference is known, language-dependent judge noise, languages
// whose judges follow a conflicting preference, and languages held out of
// training. It trains LoRA adapters of a small gpu/model transformer with package train in several arms and
// writes tables and plots to docs/.
package experiment

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/congrad-beam/congrad/train"
)

// Lang describes one synthetic language of the task.
type Lang struct {
	Code     string
	Pairs    int     // training pairs (0: held out of training, "unseen")
	Flip     float64 // judge noise: probability that the judged pair is swapped
	Conflict bool    // the judge follows the language-specific preference, not the shared one
	Kind     string  // "high", "low", "conflict", "unseen" (for tables)
	// Temp is the task-v2 judge's Bradley–Terry temperature: the synthetic
	// judge prefers a over b with probability σ((q_J(a) − q_J(b))/Temp), so
	// its errors fall with the quality gap (0: the flat Flip rate of v1).
	Temp float64
	// Bias (task v2, conflict languages) lists the ranks (0 = lowest shared
	// weight) of the symbols whose weight this language's judge reverses: a
	// partial, language-specific bias on top of the shared rule. Empty with
	// Conflict set: the v1 full reversal.
	Bias []int
}

// Task is the full specification of the controlled task. All randomness
// derives from Seed, so a Task value reproduces the same data.
type Task struct {
	Langs     []Lang
	Symbols   int // latent symbols per language alphabet
	PromptLen int
	RespLen   int
	EvalPairs int // clean held-out pairs per language
	Seed      uint64
	// Version is "v1" (the issue-7 task: one round of fixed pairs) or "v2"
	// (issue 13: self-rewarding rounds, see DefaultTaskV2); "" means v1.
	Version string
	// Candidates (v2) is the number of responses sampled per prompt; the
	// judge's best and worst form the pair.
	Candidates int
	// Rounds (v2) is the number of self-rewarding rounds; the training
	// budget (Config.Steps) is split evenly over them.
	Rounds int
}

// DefaultTask is the task of docs/EXPERIMENTS.md. It was fixed by the
// interference check (joint vs alone), before any ConGrad arm was run.
func DefaultTask() Task {
	return Task{
		Langs: []Lang{
			{Code: "h1", Pairs: 300, Flip: 0.05, Kind: "high"},
			{Code: "h2", Pairs: 300, Flip: 0.05, Kind: "high"},
			{Code: "h3", Pairs: 300, Flip: 0.05, Kind: "high"},
			{Code: "l1", Pairs: 120, Flip: 0.30, Kind: "low"},
			{Code: "l2", Pairs: 120, Flip: 0.30, Kind: "low"},
			{Code: "c1", Pairs: 300, Flip: 0.05, Conflict: true, Kind: "conflict"},
			{Code: "c2", Pairs: 300, Flip: 0.05, Conflict: true, Kind: "conflict"},
			{Code: "u1", Kind: "unseen"},
			{Code: "u2", Kind: "unseen"},
		},
		Symbols: 10, PromptLen: 6, RespLen: 6, EvalPairs: 200, Seed: 20260,
	}
}

// Validate checks the task so that bad settings fail before any training.
func (t Task) Validate() error {
	if len(t.Langs) == 0 || t.Symbols < 2 || t.PromptLen < 1 || t.RespLen < 1 || t.EvalPairs < 1 {
		return fmt.Errorf("task: need languages, Symbols >= 2, positive lengths and EvalPairs: %+v", t)
	}
	if 33+len(t.Langs)*t.Symbols > 127 {
		return fmt.Errorf("task: %d languages × %d symbols do not fit printable ASCII", len(t.Langs), t.Symbols)
	}
	seen := map[string]bool{}
	for _, l := range t.Langs {
		if l.Code == "" || seen[l.Code] {
			return fmt.Errorf("task: empty or duplicate language code %q", l.Code)
		}
		seen[l.Code] = true
		if l.Pairs < 0 || l.Flip < 0 || l.Flip > 1 || math.IsNaN(l.Flip) {
			return fmt.Errorf("task: language %s: Pairs >= 0 and Flip in [0,1] required", l.Code)
		}
		if l.Temp < 0 || math.IsNaN(l.Temp) || math.IsInf(l.Temp, 0) {
			return fmt.Errorf("task: language %s: Temp must be finite and >= 0", l.Code)
		}
		for _, r := range l.Bias {
			if r < 0 || r >= t.Symbols {
				return fmt.Errorf("task: language %s: bias rank %d outside [0, %d)", l.Code, r, t.Symbols)
			}
		}
	}
	switch t.Version {
	case "", "v1":
	case "v2":
		if t.Candidates < 2 || t.Rounds < 1 {
			return fmt.Errorf("task v2: need Candidates >= 2 and Rounds >= 1 (got %d, %d)", t.Candidates, t.Rounds)
		}
		for _, l := range t.Langs {
			if l.Pairs > 0 && l.Temp <= 0 {
				return fmt.Errorf("task v2: language %s: the Bradley–Terry judge needs Temp > 0", l.Code)
			}
		}
	default:
		return fmt.Errorf("task: unknown version %q (want v1 or v2)", t.Version)
	}
	return nil
}

// V2 reports whether t is the self-rewarding task of issue 13.
func (t Task) V2() bool { return t.Version == "v2" }

// char is the byte that writes latent symbol s in language li: each
// language has its own disjoint alphabet ("script").
func (t Task) char(li, s int) byte { return byte(33 + li*t.Symbols + s) }

// TrueWeights is the shared rule: the quality of a response is the sum of
// its symbols' weights, evenly spaced in [-1, 1] in a seeded order.
func (t Task) TrueWeights() []float64 {
	rng := rand.New(rand.NewPCG(t.Seed, 0x77)) // "w"
	w := make([]float64, t.Symbols)
	for i, p := range rng.Perm(t.Symbols) {
		w[p] = -1 + 2*float64(i)/float64(t.Symbols-1)
	}
	return w
}

// ConflictWeights is the language-specific preference of conflict
// languages: the shared rule reversed.
func (t Task) ConflictWeights() []float64 {
	w := t.TrueWeights()
	for i := range w {
		w[i] = -w[i]
	}
	return w
}

// JudgeWeights are the weights of language li's judge: the shared rule; for
// a conflict language with Bias (v2) the shared rule with the listed
// symbols' weights reversed; for a conflict language without Bias (v1) the
// shared rule reversed. It is also the conflict language's "own preference".
func (t Task) JudgeWeights(li int) []float64 {
	l := t.Langs[li]
	switch {
	case !l.Conflict:
		return t.TrueWeights()
	case len(l.Bias) == 0:
		return t.ConflictWeights()
	}
	w := t.TrueWeights()
	order := make([]int, len(w)) // symbols by rank of their shared weight
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(w[a], w[b]) })
	out := slices.Clone(w)
	for _, r := range l.Bias {
		out[order[r]] = -w[order[r]]
	}
	return out
}

// Example is one generated pair with its ground truth.
type Example struct {
	train.Pair
	CleanChosenFirst bool // true when Chosen is the clean (shared-rule) winner
	LabelCorrect     bool // the judged label agrees with the shared rule
	// JudgeMargin is the quality gap the judge sees, |q_J(a) − q_J(b)| under
	// the judge's own weights (the shared rule, or the reversed one for a
	// conflict language): the "judge-margin" baseline keeps the pairs with
	// the largest gaps. Flips in this task do not depend on it.
	JudgeMargin float64
	// Task v2: the round that generated the pair, the shared-rule quality
	// gap q(chosen) − q(rejected) (negative: the label is wrong; 0: a tie,
	// counted as not correct), and whether the label agrees with the
	// language's own judge weights without noise.
	Round      int
	TrueGap    float64
	OwnCorrect bool
}

func quality(w []float64, syms []int) float64 {
	q := 0.0
	for _, s := range syms {
		q += w[s]
	}
	return q
}

// genPair draws a prompt and two responses with different true quality and
// returns them ordered (better, worse) under weights w.
func (t Task) genPair(rng *rand.Rand, w []float64) (prompt, better, worse []int) {
	draw := func(n int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = rng.IntN(t.Symbols)
		}
		return out
	}
	prompt = draw(t.PromptLen)
	for {
		a, b := draw(t.RespLen), draw(t.RespLen)
		qa, qb := quality(w, a), quality(w, b)
		if math.Abs(qa-qb) < 1e-9 {
			continue
		}
		if qa > qb {
			return prompt, a, b
		}
		return prompt, b, a
	}
}

func (t Task) text(li int, syms []int) string {
	b := make([]byte, len(syms))
	for i, s := range syms {
		b[i] = t.char(li, s)
	}
	return string(b)
}

// TrainPairs generates the judged training pairs of every seen language.
// dataSeed varies the sample across experiment seeds; the languages, alphabets
// and rules stay fixed by Task.Seed.
func (t Task) TrainPairs(dataSeed uint64) []Example {
	wt := t.TrueWeights()
	var out []Example
	for li, l := range t.Langs {
		rng := rand.New(rand.NewPCG(t.Seed^dataSeed, uint64(1000+li)))
		for i := 0; i < l.Pairs; i++ {
			prompt, better, worse := t.genPair(rng, wt)
			judgedBetterFirst := true
			margin := quality(wt, better) - quality(wt, worse)
			if l.Conflict { // the judge ranks by its own preference
				judgedBetterFirst = quality(t.ConflictWeights(), better) > quality(t.ConflictWeights(), worse)
				margin = math.Abs(quality(t.ConflictWeights(), better) - quality(t.ConflictWeights(), worse))
			}
			if rng.Float64() < l.Flip {
				judgedBetterFirst = !judgedBetterFirst
			}
			chosen, rejected := better, worse
			if !judgedBetterFirst {
				chosen, rejected = worse, better
			}
			out = append(out, Example{
				Pair: train.Pair{ID: fmt.Sprintf("%s-%04d", l.Code, i), Lang: l.Code, Prompt: t.text(li, prompt),
					Chosen: t.text(li, chosen), Rejected: t.text(li, rejected)},
				CleanChosenFirst: judgedBetterFirst, LabelCorrect: judgedBetterFirst, JudgeMargin: margin,
			})
		}
	}
	return out
}

// EvalPairs generates clean held-out pairs for every language (seen and
// unseen): Chosen is the better response under the shared rule. For conflict
// languages, Own reports pairs ordered by their own preference as well.
func (t Task) EvalSet() (shared, own []Example) {
	wt := t.TrueWeights()
	for li, l := range t.Langs {
		wc := t.JudgeWeights(li)
		rng := rand.New(rand.NewPCG(t.Seed, uint64(9000+li)))
		for i := 0; i < t.EvalPairs; i++ {
			prompt, better, worse := t.genPair(rng, wt)
			shared = append(shared, Example{Pair: train.Pair{ID: fmt.Sprintf("eval-%s-%04d", l.Code, i), Lang: l.Code,
				Prompt: t.text(li, prompt), Chosen: t.text(li, better), Rejected: t.text(li, worse)}, CleanChosenFirst: true, LabelCorrect: true})
			if l.Conflict {
				prompt, better, worse = t.genPair(rng, wc)
				own = append(own, Example{Pair: train.Pair{ID: fmt.Sprintf("own-%s-%04d", l.Code, i), Lang: l.Code,
					Prompt: t.text(li, prompt), Chosen: t.text(li, better), Rejected: t.text(li, worse)}})
			}
		}
	}
	return shared, own
}

// DevPairs is the small trusted dev set of the LESS-style baseline and the
// anchor-gated variant: n clean pairs (shared-rule labels, no flips) spread
// round-robin over the languages of the given kinds. Its random stream is
// separate from the training and evaluation data of every seed.
func (t Task) DevPairs(dataSeed uint64, n int, kinds ...string) []Example {
	wt := t.TrueWeights()
	var li []int
	for i, l := range t.Langs {
		for _, k := range kinds {
			if l.Kind == k && l.Pairs > 0 {
				li = append(li, i)
			}
		}
	}
	if len(li) == 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(t.Seed^dataSeed, 0x646576)) // "dev"
	out := make([]Example, 0, n)
	for i := 0; i < n; i++ {
		l := li[i%len(li)]
		prompt, better, worse := t.genPair(rng, wt)
		out = append(out, Example{Pair: train.Pair{ID: fmt.Sprintf("dev-%s-%04d", t.Langs[l].Code, i), Lang: t.Langs[l].Code,
			Prompt: t.text(l, prompt), Chosen: t.text(l, better), Rejected: t.text(l, worse)},
			CleanChosenFirst: true, LabelCorrect: true, JudgeMargin: quality(wt, better) - quality(wt, worse)})
	}
	return out
}
