package selfreward

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"testing"
)

// TestParseScoreFixture runs the multilingual judge answers in
// testdata/selfreward through the parser.
func TestParseScoreFixture(t *testing.T) {
	f, err := os.Open("../testdata/selfreward/judgments.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string]error{"none": ErrNoScore, "ambiguous": ErrAmbiguousScore, "scale": ErrWrongScale, "range": ErrScoreOutOfRange}
	sc := bufio.NewScanner(f)
	n := 0
	for line := 1; sc.Scan(); line++ {
		var c struct {
			Lang, Text, Error string
			Score             float64
		}
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("line %d: %v", line, err)
		}
		n++
		m, err := ParseScore(c.Text)
		if c.Error != "" {
			if !errors.Is(err, want[c.Error]) {
				t.Errorf("line %d (%s): got %v, %v; want refusal %s", line, c.Lang, m.Score, err, c.Error)
			}
			continue
		}
		if err != nil || m.Score != c.Score {
			t.Errorf("line %d (%s): got %v, %v; want %v", line, c.Lang, m.Score, err, c.Score)
		}
	}
	if n < 20 {
		t.Fatalf("fixture has only %d cases", n)
	}
}
