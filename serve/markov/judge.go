package markov

import (
	"context"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/congrad-beam/congrad/serve"
)

// OverlapJudge wraps an engine with a rule-based judge. A character Markov
// model sees only its last few characters, so as a judge it gives every
// answer the same score and no pair would ever form. OverlapJudge instead
// reads the request and the answer out of a judge prompt (the two blocks
// delimited by "<<<" and ">>>", as selfreward.DefaultRubric writes them) and
// scores how much of the request's character trigrams the answer covers,
// as a distribution over "0".."5" peaked at 5×coverage. It is deterministic
// and cheap; it is not a language model, and it answers only judge prompts:
// everything else goes to the wrapped engine.
type OverlapJudge struct {
	serve.Engine
}

// judged returns the request and answer of a judge prompt, and what follows
// the answer (a score cue, when the prompt ends in one).
func judged(prompt string) (req, ans, tail string, ok bool) {
	a := strings.LastIndex(prompt, "<<<")
	if a < 0 {
		return "", "", "", false
	}
	b := strings.Index(prompt[a:], ">>>")
	if b < 0 {
		return "", "", "", false
	}
	ans, tail = prompt[a+3:a+b], prompt[a+b+3:]
	r := strings.LastIndex(prompt[:a], "<<<")
	if r < 0 {
		return "", "", "", false
	}
	e := strings.Index(prompt[r:a], ">>>")
	if e < 0 {
		return "", "", "", false
	}
	return prompt[r+3 : r+e], ans, tail, true
}

func trigrams(s string) map[string]bool {
	rs := []rune(strings.ToLower(strings.Join(strings.Fields(s), " ")))
	out := map[string]bool{}
	for i := 0; i+3 <= len(rs); i++ {
		out[string(rs[i:i+3])] = true
	}
	return out
}

// scoreDist: p(d) ∝ exp(-(d-s)²/0.5), scaled to 0.95 so that the digits are
// not the only possible next token.
func scoreDist(req, ans string) []float64 {
	rt, at := trigrams(req), trigrams(ans)
	hit := 0
	for t := range rt {
		if at[t] {
			hit++
		}
	}
	s := 0.0
	if len(rt) > 0 {
		s = 5 * float64(hit) / float64(len(rt))
	}
	p := make([]float64, 6)
	var sum float64
	for d := range p {
		p[d] = math.Exp(-(float64(d) - s) * (float64(d) - s) / 0.5)
		sum += p[d]
	}
	for d := range p {
		p[d] = 0.95 * p[d] / sum
	}
	return p
}

// ScoreProbs implements serve.Engine.
func (j OverlapJudge) ScoreProbs(ctx context.Context, prompts []string) ([][]float64, error) {
	out := make([][]float64, len(prompts))
	var rest []string
	var at []int
	for i, p := range prompts {
		if req, ans, _, ok := judged(p); ok {
			out[i] = scoreDist(req, ans)
		} else {
			rest, at = append(rest, p), append(at, i)
		}
	}
	if len(rest) > 0 {
		inner, err := j.Engine.ScoreProbs(ctx, rest)
		if err != nil {
			return nil, err
		}
		for k, i := range at {
			out[i] = inner[k]
		}
	}
	return out, nil
}

// Generate implements serve.Engine: a judge prompt gets a digit drawn from
// the score distribution ("Score: d" unless the prompt already ends in the
// cue), everything else the wrapped engine's text.
func (j OverlapJudge) Generate(ctx context.Context, prompts []string, o serve.SampleOptions) ([][]string, error) {
	out := make([][]string, len(prompts))
	for i, p := range prompts {
		req, ans, tail, ok := judged(p)
		if !ok {
			inner, err := j.Engine.Generate(ctx, []string{p}, o)
			if err != nil {
				return nil, err
			}
			out[i] = inner[0]
			continue
		}
		dist := scoreDist(req, ans)
		for k := 0; k < o.N; k++ {
			a, b := seedFor(o.Seed+int64(k), p, 1)
			d := sample(dist, o.Temperature, o.TopP, rand.New(rand.NewPCG(a, b)))
			text := strconv.Itoa(d)
			if !strings.HasSuffix(strings.TrimRight(tail, " "), ":") {
				text = "The answer covers part of the request.\nScore: " + text
			}
			out[i] = append(out[i], text)
		}
	}
	return out, nil
}
