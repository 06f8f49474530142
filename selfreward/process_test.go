package selfreward

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/congrad-beam/congrad/schemas"
)

// scriptedBackend generates fixed texts and judges each response with the
// score its text maps to; it records which responses were sent to the judge.
type scriptedBackend struct {
	texts  []string
	scores map[string]float64

	mu     sync.Mutex
	judged []string
}

func (b *scriptedBackend) Generate(_ context.Context, _ string, n int, _ SampleOptions) ([]Completion, error) {
	out := make([]Completion, 0, n)
	for _, t := range b.texts[:n] {
		out = append(out, Completion{Text: t, Tokens: len(strings.Fields(t))})
	}
	return out, nil
}

func (b *scriptedBackend) Judge(_ context.Context, jp string, j int, _ SampleOptions) ([]Judgment, error) {
	// The test rubric is "{{prompt}}\x00{{response}}": the response follows the NUL.
	jp = jp[strings.IndexByte(jp, 0)+1:]
	b.mu.Lock()
	b.judged = append(b.judged, jp)
	b.mu.Unlock()
	s, ok := b.scores[jp]
	if !ok {
		return nil, fmt.Errorf("scripted judge: no score for response %q", jp)
	}
	out := make([]Judgment, j)
	for i := range out {
		out[i] = Judgment{OK: true, Score: s, Parsed: s, ProbScore: math.NaN()}
	}
	return out, nil
}

// TestProcessPromptEmptyCandidates: empty and whitespace-only responses are
// not judged, are counted, stay in the candidates for audit and are never
// paired; too few non-empty ones drop the prompt with drop:empty.
func TestProcessPromptEmptyCandidates(t *testing.T) {
	scores := map[string]float64{"good answer": 5, "fair answer": 3, "poor answer": 1}
	p := schemas.Prompt{ID: "p1", Lang: "de", Prompt: "Erkläre Photosynthese."}
	cases := []struct {
		name          string
		texts         []string
		empty         int
		drop          string // "" means paired
		chosen, rej   string
		wantJudgments int
	}{
		{name: "no empty", texts: []string{"good answer", "fair answer", "poor answer"},
			chosen: "good answer", rej: "poor answer", wantJudgments: 6},
		{name: "empty worst skipped", texts: []string{"good answer", "fair answer", ""}, empty: 1,
			chosen: "good answer", rej: "fair answer", wantJudgments: 4},
		{name: "whitespace-only skipped", texts: []string{" \n\t ", "fair answer", "poor answer"}, empty: 1,
			chosen: "fair answer", rej: "poor answer", wantJudgments: 4},
		{name: "all but one empty", texts: []string{"", "good answer", "  "}, empty: 2, drop: DropEmpty, wantJudgments: 2},
		{name: "all empty", texts: []string{"", "\n", " "}, empty: 3, drop: DropEmpty, wantJudgments: 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := Options{N: len(c.texts), J: 2, MinMargin: 0.5, Rubric: PromptPlaceholder + "\x00" + ResponsePlaceholder}.WithDefaults()
			if err := o.Validate(); err != nil {
				t.Fatal(err)
			}
			b := &scriptedBackend{texts: c.texts, scores: scores}
			r := ProcessPrompt(context.Background(), b, p, o)
			if r.Dead {
				t.Fatalf("dead: %s", r.Reason)
			}
			for _, jp := range b.judged {
				if IsEmptyResponse(jp) {
					t.Errorf("empty response %q was sent to the judge", jp)
				}
			}
			if r.Empty != c.empty || r.Judgments != c.wantJudgments || len(b.judged)*o.J != c.wantJudgments {
				t.Fatalf("empty %d judgments %d judge calls %d; want empty %d judgments %d", r.Empty, r.Judgments, len(b.judged), c.empty, c.wantJudgments)
			}
			if len(r.Candidates) != len(c.texts) {
				t.Fatalf("%d candidates for audit, want all %d", len(r.Candidates), len(c.texts))
			}
			for i, cd := range r.Candidates {
				if cd.Index != i || cd.Text != c.texts[i] {
					t.Fatalf("candidate %d: %+v", i, cd)
				}
				if IsEmptyResponse(cd.Text) && (len(cd.Scores) != 0 || cd.ParseFailures != 0 || !math.IsNaN(cd.MeanScore)) {
					t.Fatalf("empty candidate %d carries judge results: %+v", i, cd)
				}
			}
			if c.drop != "" {
				if r.Paired || ReasonCode(r.Reason) != c.drop || !IsDrop(r.Reason) {
					t.Fatalf("paired=%v reason %q, want code %s", r.Paired, r.Reason, c.drop)
				}
				return
			}
			if !r.Paired || r.Reason != "" {
				t.Fatalf("not paired: %q", r.Reason)
			}
			if r.Pair.Chosen != c.chosen || r.Pair.Rejected != c.rej {
				t.Fatalf("chosen %q rejected %q, want %q %q", r.Pair.Chosen, r.Pair.Rejected, c.chosen, c.rej)
			}
		})
	}
}
