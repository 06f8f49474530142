package markov

import (
	"context"
	"strings"
	"testing"

	"github.com/congrad-beam/congrad/serve"
)

func TestSeededAndScoreProbs(t *testing.T) {
	m := New("", 4)
	ctx := context.Background()
	o := serve.SampleOptions{N: 3, Temperature: 0.8, TopP: 0.9, MaxTokens: 40, Seed: 5}
	a, _ := m.Generate(ctx, []string{"Water "}, o)
	b, _ := m.Generate(ctx, []string{"Water "}, o)
	if strings.Join(a[0], "|") != strings.Join(b[0], "|") || a[0][0] == a[0][1] && a[0][1] == a[0][2] {
		t.Fatalf("not seeded or not sampling: %q %q", a[0], b[0])
	}
	// Sample i with seed s is sample 0 with seed s+i.
	o1 := o
	o1.N, o1.Seed = 1, o.Seed+2
	c, _ := m.Generate(ctx, []string{"Water "}, o1)
	if c[0][0] != a[0][2] {
		t.Fatalf("seed+i contract broken: %q vs %q", c[0][0], a[0][2])
	}
	p, _ := m.ScoreProbs(ctx, []string{"Clear answer.\nScore: ", "The water is "})
	sum := func(v []float64) (s float64) {
		for _, x := range v {
			s += x
		}
		return s
	}
	if sum(p[0]) < 0.8 || sum(p[1]) > 0.2 {
		t.Fatalf("digit mass after the cue %v, in prose %v", sum(p[0]), sum(p[1]))
	}
}

func TestOverlapJudgePrefersOverlap(t *testing.T) {
	j := OverlapJudge{Engine: New("", 4)}
	prompt := func(ans string) string {
		return "Rubric\n<<<\nWhy does water boil earlier in the mountains?\n>>>\n<<<\n" + ans + "\n>>>\nScore: "
	}
	p, err := j.ScoreProbs(context.Background(), []string{prompt("Water boils earlier in the mountains because the air pressure is lower."), prompt("Bananas are yellow.")})
	if err != nil {
		t.Fatal(err)
	}
	mean := func(v []float64) (m float64) {
		var s float64
		for d, x := range v {
			m += float64(d) * x
			s += x
		}
		return m / s
	}
	if mean(p[0]) <= mean(p[1])+1 {
		t.Fatalf("overlapping answer %v not clearly above unrelated %v", mean(p[0]), mean(p[1]))
	}
	out, _ := j.Generate(context.Background(), []string{prompt("x")}, serve.SampleOptions{N: 2, Temperature: 0.7, TopP: 1, MaxTokens: 5, Seed: 1})
	if len(out[0]) != 2 || len(out[0][0]) != 1 || out[0][0][0] < '0' || out[0][0][0] > '5' {
		t.Fatalf("judge after the cue must answer one digit: %q", out[0])
	}
}
