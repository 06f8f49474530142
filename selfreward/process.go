package selfreward

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/congrad-beam/congrad/schemas"
)

// Stage is the DeadLetter.Stage of every row this package writes.
const Stage = "selfreward"

// Result is the outcome for one prompt: exactly one of Paired, a drop
// (Reason starts with "drop:") or a dead letter (Dead) holds.
type Result struct {
	Prompt        schemas.Prompt
	Candidates    []schemas.Candidate // in candidate order; also for dropped prompts (audit)
	Pair          schemas.Pair
	Paired        bool
	Dead          bool   // invalid input or backend failure
	Reason        string // drop or dead-letter reason, "" when paired
	Judgments     int    // judge answers received
	Empty         int    // candidates with an empty response: not judged, never paired
	ParseFailures int    // judge answers without a usable score
}

// DeadLetter renders a dropped or failed prompt as a dead-letter row.
func (r Result) DeadLetter() schemas.DeadLetter {
	return schemas.DeadLetter{Stage: Stage, Source: r.Prompt.Lang + "/" + r.Prompt.ID, Row: -1, Reason: r.Reason, Payload: truncate(r.Prompt.Prompt, 512)}
}

// IsDrop tells a dropped prompt's dead-letter row from a failed one.
func IsDrop(reason string) bool { return strings.HasPrefix(reason, "drop:") }

// ReasonCode is the reason up to the first colon after the code
// ("drop:margin: 0.5 < 1" -> "drop:margin"), for counters.
func ReasonCode(reason string) string {
	if i := strings.Index(reason, ":"); i >= 0 {
		if j := strings.Index(reason[i+1:], ":"); j >= 0 {
			return reason[:i+1+j]
		}
	}
	return reason
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Check returns a dead-letter reason for a prompt that must not be sent, or "".
func Check(p schemas.Prompt, o Options) string {
	switch {
	case p.ID == "":
		return InvalidNoID + ": prompt has no id"
	case p.Lang == "":
		return "invalid:no_lang: prompt " + p.ID + " has no language"
	case !utf8.ValidString(p.Prompt):
		return "invalid:bad_utf8: prompt text is not valid UTF-8"
	case strings.TrimSpace(p.Prompt) == "":
		return InvalidEmpty + ": prompt text is empty"
	}
	if n := utf8.RuneCountInString(p.Prompt); n > o.MaxPromptChars {
		return fmt.Sprintf("%s: %d characters > max %d", InvalidTooLong, n, o.MaxPromptChars)
	}
	return ""
}

// RequestSeed derives the seed of one request from the run seed, the prompt
// and the request's role, so a prompt gets the same samples whatever batch or
// worker it lands in. Seeds stay below 2^31 minus room for seed+i, because
// several servers (llama.cpp) keep the seed in 32 bits.
func RequestSeed(seed int64, p schemas.Prompt, role string, i int) int64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d\x00%s\x00%s\x00%s\x00%d", seed, p.Lang, p.ID, role, i)
	return int64(h.Sum64() % (1<<31 - 1<<16))
}

func (o Options) requestSeed(p schemas.Prompt, role string, i int) int64 {
	if o.SeedPerRun {
		return RequestSeed(o.Seed, schemas.Prompt{}, role, i)
	}
	return RequestSeed(o.Seed, p, role, i)
}

// ProcessPrompt runs one prompt through generation, judging and pair
// formation. o must have been through WithDefaults and Validate.
func ProcessPrompt(ctx context.Context, b Backend, p schemas.Prompt, o Options) Result {
	res := Result{Prompt: p}
	if reason := Check(p, o); reason != "" {
		res.Dead, res.Reason = true, reason
		return res
	}
	gens, err := b.Generate(ctx, p.Prompt, o.N, o.candidateSampling(o.requestSeed(p, "gen", 0)))
	if err == nil && len(gens) < o.N {
		err = fmt.Errorf("%w: %d of %d", ErrShortResponse, len(gens), o.N)
	}
	if err != nil {
		res.Dead, res.Reason = true, fmt.Sprintf("%s: generate: %v", BackendFailed, err)
		return res
	}
	gens = gens[:o.N]

	// Judge all candidates at once; the backend bounds the real concurrency.
	// Empty responses are not judged: FormPair never pairs them, so their
	// scores would be J wasted judge calls each. Judge seeds are keyed by the
	// candidate index, so skipping one leaves every other request unchanged
	// and the outputs stay deterministic.
	judged := make([][]Judgment, len(gens))
	errs := make([]error, len(gens))
	var wg sync.WaitGroup
	rubric := o.RubricFor(p.Lang)
	for i := range gens {
		if IsEmptyResponse(gens[i].Text) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			jp := JudgePrompt(rubric, p.Prompt, gens[i].Text)
			judged[i], errs[i] = b.Judge(ctx, jp, o.J, o.judgeSampling(o.requestSeed(p, "judge", i)))
			if errs[i] == nil && len(judged[i]) < o.J {
				errs[i] = fmt.Errorf("%w: %d of %d judgments", ErrShortResponse, len(judged[i]), o.J)
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			res.Dead, res.Reason = true, fmt.Sprintf("%s: judge candidate %d: %v", BackendFailed, i, err)
			return res
		}
	}

	for i, g := range gens {
		c := schemas.Candidate{PromptID: p.ID, Lang: p.Lang, Index: i, Text: g.Text, Tokens: g.Tokens}
		if IsEmptyResponse(g.Text) {
			// Kept for audit with no scores (MeanScore NaN, no parse failures):
			// the empty text itself says why it was not judged.
			res.Empty++
			c.MeanScore = math.NaN()
			res.Candidates = append(res.Candidates, c)
			continue
		}
		for _, j := range judged[i][:o.J] {
			res.Judgments++
			if !j.OK {
				c.ParseFailures++
				continue
			}
			c.Scores = append(c.Scores, j.Score)
		}
		res.ParseFailures += c.ParseFailures
		c.MeanScore = MeanScore(c.Scores)
		res.Candidates = append(res.Candidates, c)
	}
	res.Pair, res.Reason = FormPair(p, res.Candidates, o)
	res.Paired = res.Reason == ""
	return res
}

// ProcessBatch runs prompts with up to parallel of them in flight and returns
// the results in input order.
func ProcessBatch(ctx context.Context, b Backend, prompts []schemas.Prompt, o Options, parallel int) []Result {
	if parallel < 1 {
		parallel = 1
	}
	out := make([]Result, len(prompts))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range prompts {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i] = ProcessPrompt(ctx, b, prompts[i], o)
		}()
	}
	wg.Wait()
	return out
}
