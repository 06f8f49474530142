package selfreward

import (
	"math"
	"strings"
	"testing"

	"github.com/congrad-beam/congrad/schemas"
)

func cand(i int, text string, tokens int, scores ...float64) schemas.Candidate {
	return schemas.Candidate{PromptID: "p1", Lang: "de", Index: i, Text: text, Tokens: tokens, Scores: scores, MeanScore: MeanScore(scores)}
}

func TestFormPair(t *testing.T) {
	p := schemas.Prompt{ID: "p1", Lang: "de", Prompt: "Erkläre Photosynthese."}
	o := Options{}.WithDefaults()
	cases := []struct {
		name         string
		cands        []schemas.Candidate
		opts         func(Options) Options
		drop         string
		chosen, rej  string
		margin       float64
		chosenScores []float64
	}{
		{name: "best vs worst", cands: []schemas.Candidate{cand(0, "a", 10, 3, 3), cand(1, "b", 10, 5, 4), cand(2, "c", 10, 1, 2), cand(3, "d", 10, 4)},
			chosen: "b", rej: "c", margin: 3, chosenScores: []float64{5, 4}},
		{name: "ties go to the lower index", cands: []schemas.Candidate{cand(0, "a", 1, 1), cand(1, "b", 1, 5), cand(2, "c", 1, 5), cand(3, "d", 1, 1)},
			chosen: "b", rej: "a", margin: 4},
		{name: "all tie", cands: []schemas.Candidate{cand(0, "a", 1, 3), cand(1, "b", 1, 3)}, drop: DropAllTie},
		{name: "margin below min", cands: []schemas.Candidate{cand(0, "a", 1, 3), cand(1, "b", 1, 3.5)}, drop: DropMargin},
		{name: "margin exactly min is kept", cands: []schemas.Candidate{cand(0, "a", 1, 3), cand(1, "b", 1, 4)}, chosen: "b", rej: "a", margin: 1},
		{name: "per-language min margin", cands: []schemas.Candidate{cand(0, "a", 1, 3), cand(1, "b", 1, 4)},
			opts: func(o Options) Options { o.MinMarginByLang = map[string]float64{"de": 2}; return o }, drop: DropMargin},
		{name: "one candidate", cands: []schemas.Candidate{cand(0, "a", 1, 3)}, drop: DropTooFewScored},
		{name: "all judgments failed", cands: []schemas.Candidate{cand(0, "a", 1), cand(1, "b", 1), cand(2, "c", 1)}, drop: DropTooFewScored},
		{name: "one scored of three", cands: []schemas.Candidate{cand(0, "a", 1), cand(1, "b", 1, 4), cand(2, "c", 1)}, drop: DropTooFewScored},
		{name: "unscored candidates are skipped", cands: []schemas.Candidate{cand(0, "a", 1), cand(1, "b", 1, 4), cand(2, "c", 1, 0)}, chosen: "b", rej: "c", margin: 4},
		{name: "identical texts", cands: []schemas.Candidate{cand(0, "same", 1, 5), cand(1, "same", 1, 1)}, drop: DropIdentical},
		// Empty responses: never paired, whatever the judge thought of them.
		{name: "empty worst is skipped", cands: []schemas.Candidate{cand(0, "a", 10, 5), cand(1, "b", 10, 3), cand(2, "", 0, 0)},
			chosen: "a", rej: "b", margin: 2},
		{name: "empty best is skipped", cands: []schemas.Candidate{cand(0, "", 0, 5), cand(1, "a", 10, 4), cand(2, "b", 10, 1)},
			chosen: "a", rej: "b", margin: 3},
		{name: "whitespace-only counts as empty", cands: []schemas.Candidate{cand(0, "a", 10, 4), cand(1, " \n\t\u00a0", 3, 0), cand(2, "b", 10, 2)},
			chosen: "a", rej: "b", margin: 2},
		{name: "unjudged empty candidate is skipped", cands: []schemas.Candidate{cand(0, "a", 10, 4), cand(1, "", 0), cand(2, "b", 10, 2)},
			chosen: "a", rej: "b", margin: 2},
		{name: "all but one empty", cands: []schemas.Candidate{cand(0, "", 0, 0), cand(1, "a", 10, 4), cand(2, "  ", 1, 1), cand(3, "\n", 1)}, drop: DropEmpty},
		{name: "all empty", cands: []schemas.Candidate{cand(0, "", 0, 5), cand(1, " ", 1, 0)}, drop: DropEmpty},
		{name: "two non-empty but one unscored", cands: []schemas.Candidate{cand(0, "", 0, 0), cand(1, "a", 10, 4), cand(2, "b", 10)}, drop: DropTooFewScored},
		{name: "length penalty flips the order", cands: []schemas.Candidate{cand(0, "long", 500, 5), cand(1, "short", 10, 4), cand(2, "bad", 10, 1)},
			opts:   func(o Options) Options { o.LengthPenalty = 1; return o }, // long: 5-5=0, short: 4-0.1=3.9, bad: 1-0.1=0.9
			chosen: "short", rej: "long", margin: 3.9},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			oo := o
			if c.opts != nil {
				oo = c.opts(o)
			}
			pair, reason := FormPair(p, c.cands, oo)
			if c.drop != "" {
				if !strings.HasPrefix(reason, c.drop) || ReasonCode(reason) != c.drop {
					t.Fatalf("reason %q, want code %s", reason, c.drop)
				}
				return
			}
			if reason != "" {
				t.Fatalf("dropped: %s", reason)
			}
			if pair.Chosen != c.chosen || pair.Rejected != c.rej || math.Abs(pair.Margin-c.margin) > 1e-9 {
				t.Fatalf("got chosen %q rejected %q margin %v", pair.Chosen, pair.Rejected, pair.Margin)
			}
			if c.chosenScores != nil && !equalFloats(pair.ChosenScores, c.chosenScores) {
				t.Fatalf("chosen scores %v", pair.ChosenScores)
			}
			if pair.PairID != "de/p1/t0" || !math.IsNaN(pair.RefChosenLogp) {
				t.Fatalf("pair id %q ref %v", pair.PairID, pair.RefChosenLogp)
			}
		})
	}
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCheckAndOptions(t *testing.T) {
	o := Options{MaxPromptChars: 5}.WithDefaults()
	for _, c := range []struct {
		p    schemas.Prompt
		code string
	}{
		{schemas.Prompt{ID: "x", Lang: "en", Prompt: "  \n"}, InvalidEmpty},
		{schemas.Prompt{ID: "x", Lang: "en", Prompt: "日本語のテキスト"}, InvalidTooLong},
		{schemas.Prompt{Lang: "en", Prompt: "hi"}, InvalidNoID},
		{schemas.Prompt{ID: "x", Lang: "ja", Prompt: "日本語"}, ""},
	} {
		if got := Check(c.p, o); ReasonCode(got) != c.code && !(c.code == "" && got == "") {
			t.Errorf("Check(%+v) = %q, want %s", c.p, got, c.code)
		}
	}
	if err := (Options{N: 1}).WithDefaults().Validate(); err == nil {
		t.Error("N=1 must be refused")
	}
	if err := (Options{Rubric: "no placeholders"}).WithDefaults().Validate(); err == nil {
		t.Error("a rubric without placeholders must be refused")
	}
	if err := (Options{}).WithDefaults().Validate(); err != nil {
		t.Error(err)
	}
	a, b := RequestSeed(1, schemas.Prompt{ID: "p", Lang: "en"}, "gen", 0), RequestSeed(1, schemas.Prompt{ID: "p", Lang: "de"}, "gen", 0)
	if a == b || a < 0 || a >= 1<<31 {
		t.Errorf("seeds %d %d", a, b)
	}
}

// With Exact, a zero is a value: Temperature 0 is greedy, MinMargin and
// MinScoreMass 0 stay 0; zeros that mean nothing are refused, and so is NaN.
func TestExactOptionsHonourZero(t *testing.T) {
	o := Options{Exact: true, N: 2, J: 1, TopP: 1, JudgeTopP: 1, MaxTokens: 8, JudgeMaxTokens: 2, MaxPromptChars: 100}.WithDefaults()
	if o.Temperature != 0 || o.JudgeTemperature != 0 || o.MinMargin != 0 || o.MinScoreMass != 0 || o.TopLogprobs != 0 || o.Rubric != DefaultRubric {
		t.Fatalf("exact options changed: %+v", o)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (Options{Exact: true, N: 2, J: 1}).WithDefaults().Validate(); err == nil {
		t.Fatal("exact options with TopP 0 and MaxTokens 0 validated")
	}
	for _, bad := range []Options{{Temperature: math.NaN()}, {MinMargin: math.NaN()}, {TopP: math.Inf(1)},
		{LengthPenalty: math.NaN()}, {MinScoreMass: math.NaN()}, {MinMarginByLang: map[string]float64{"de": math.NaN()}}} {
		if err := bad.WithDefaults().Validate(); err == nil {
			t.Errorf("%+v validated", bad)
		}
	}
}
