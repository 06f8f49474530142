package selfreward

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestParseScore(t *testing.T) {
	ok := []struct {
		name, text string
		want       float64
	}{
		{"canonical", "The answer is relevant and clear.\nScore: 4", 4},
		{"lowercase", "score: 2", 2},
		{"no space", "Score:5", 5},
		{"markdown label", "Reasons...\n**Score:** 3", 3},
		{"markdown number", "Score: **1**", 1},
		{"fraction after label", "Score: 4/5", 4},
		{"fraction spaced", "Score: 4 / 5", 4},
		{"unlabelled fraction", "Overall I would give it 3/5.", 3},
		{"out of", "I rate it 2 out of 5", 2},
		{"decimal", "Score: 4.5", 4.5},
		{"decimal comma", "Punktzahl: 3,5", 3.5},
		{"full-width digit and colon", "score：４", 4},
		{"full-width fraction", "得分：３／５", 3},
		{"german", "Begründung: gut.\nPunktzahl: 3", 3},
		{"german bewertung", "Bewertung = 2", 2},
		{"french", "La réponse est claire. Score : 5", 5},
		{"french note finale", "note finale : 4/5", 4},
		{"spanish", "Puntuación: 1", 1},
		{"portuguese", "Pontuação: 0", 0},
		{"italian", "Punteggio: 3", 3},
		{"russian", "Оценка: 4", 4},
		{"chinese", "回答相关且清楚。\n评分：4", 4},
		{"chinese after hanzi", "所以最终得分为5", 5},
		{"japanese", "スコア：2", 2},
		{"korean", "점수: 3", 3},
		{"vietnamese", "Điểm: 4", 4},
		{"turkish", "Puan: 1", 1},
		{"arabic digits", "الدرجة: ٣", 3},
		{"devanagari digits", "स्कोर: ४", 4},
		{"thai", "คะแนน: 2", 2},
		{"bare number", "4", 4},
		{"bare with markdown", "**5**.", 5},
		{"parenthetical label", "Score (0-5): 2", 2},
		{"repeated agreeing", "Score: 3\n\nFinal — Score: 3", 3},
		{"zero", "Score: 0", 0},
	}
	for _, c := range ok {
		t.Run(c.name, func(t *testing.T) {
			m, err := ParseScore(c.text)
			if err != nil {
				t.Fatalf("ParseScore(%q): %v", c.text, err)
			}
			if m.Score != c.want {
				t.Fatalf("ParseScore(%q) = %v, want %v", c.text, m.Score, c.want)
			}
		})
	}
	bad := []struct {
		name, text string
		want       error
	}{
		{"empty", "", ErrNoScore},
		{"prose only", "This is a fine answer with no number.", ErrNoScore},
		{"placeholder", "Score: N", ErrNoScore},
		{"number in prose", "There are 3 steps in the recipe.", ErrNoScore},
		{"underscore word", "underscore: 3 items", ErrNoScore},
		{"note is not a score", "Note: 5 steps are missing.", ErrNoScore},
		{"range", "Score: 3-4", ErrAmbiguousScore},
		{"or", "Score: 3 or 4", ErrAmbiguousScore},
		{"disagreeing", "Score: 2\nOn reflection, Score: 4", ErrAmbiguousScore},
		{"disagreeing fractions", "between 2/5 and 4/5", ErrAmbiguousScore},
		{"ten scale", "Score: 8/10", ErrWrongScale},
		{"ten scale unlabelled", "I give it 7/10", ErrWrongScale},
		{"too high", "Score: 6", ErrScoreOutOfRange},
		{"hundred", "Score: 85", ErrScoreOutOfRange},
		{"negative", "Score: -1", ErrScoreOutOfRange},
		{"bare too high", "9", ErrScoreOutOfRange},
	}
	for _, c := range bad {
		t.Run("refuse/"+c.name, func(t *testing.T) {
			m, err := ParseScore(c.text)
			if !errors.Is(err, c.want) {
				t.Fatalf("ParseScore(%q) = %v, %v; want error %v", c.text, m, err, c.want)
			}
		})
	}
}

func TestParseScoreOffsetPointsAtDigit(t *testing.T) {
	for _, text := range []string{"Reasons.\nScore: 4", "評分：４", "**Score:** 3/5", "Оценка: 2"} {
		m, err := ParseScore(text)
		if err != nil {
			t.Fatal(err)
		}
		r := []rune(text[m.Offset:])[0]
		if d, ok := digitValue(r); !ok || float64(d) != m.Score {
			t.Errorf("%q: offset %d points at %q, not the score %v", text, m.Offset, r, m.Score)
		}
	}
}

func TestWeightedScore(t *testing.T) {
	lp := math.Log
	top := []TopLogprob{{" 4", lp(0.6)}, {"4", lp(0.1)}, {"3", lp(0.2)}, {"Score", lp(0.05)}, {"9", lp(0.05)}}
	s, mass, ok := WeightedScore(top, 0.5)
	if !ok || math.Abs(mass-0.9) > 1e-12 {
		t.Fatalf("mass %v ok %v", mass, ok)
	}
	if want := (4*0.7 + 3*0.2) / 0.9; math.Abs(s-want) > 1e-12 {
		t.Fatalf("weighted %v, want %v", s, want)
	}
	if _, _, ok := WeightedScore([]TopLogprob{{"The", lp(0.9)}, {"4", lp(0.1)}}, 0.5); ok {
		t.Fatal("a position where digits carry 10% must not give a weighted score")
	}
	if _, _, ok := WeightedScore(nil, 0); ok {
		t.Fatal("no alternatives must not give a score")
	}
}

func TestJudgePromptSubstitutesOnce(t *testing.T) {
	got := JudgePrompt(DefaultRubric, "Wie spät ist es?", "Es ist {{prompt}} Uhr.")
	if !strings.Contains(got, "Wie spät ist es?") || !strings.Contains(got, "Es ist {{prompt}} Uhr.") {
		t.Fatalf("substitution wrong:\n%s", got)
	}
	if !strings.HasSuffix(strings.TrimSpace(got), `"Score: N", where N is one whole number from 0 to 5 written with the digits 0-5.`) {
		t.Fatal("the rubric must end by asking for the Score line")
	}
}
