package selfreward_test

import (
	"context"
	"fmt"
	"math"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/selfreward"
	"github.com/congrad-beam/congrad/serve"
)

// startServe runs our OpenAI-compatible server on a loopback port.
func startServe(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := serve.Start(ctx, "127.0.0.1:0", engine, serve.Options{MaxConcurrent: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); s.Close() })
	return s.URL()
}

var e2ePrompts = []schemas.Prompt{
	{ID: "1", Lang: "en", Prompt: "Why does water boil at a lower temperature in the mountains?"},
	{ID: "1", Lang: "de", Prompt: "Warum kocht Wasser in den Bergen früher?"},
	{ID: "2", Lang: "zh", Prompt: "水为什么在山上更早沸腾？"},
	{ID: "3", Lang: "fr", Prompt: "Comment prépare-t-on le thé ?"},
}

// TestProcessAgainstServe runs the whole per-prompt step over real HTTP: the
// completions API with a score cue, so the first generated token is the
// score and its log-probs give the probability-weighted score.
func TestProcessAgainstServeWeightedScores(t *testing.T) {
	url := startServe(t)
	b := backend(t, url, func(c *selfreward.HTTPConfig) { c.API = "completions" })
	o := selfreward.Options{MaxTokens: 80, JudgeMaxTokens: 3, ScoreCue: "Score: ", MinMargin: 0.1, Seed: 11, ModelID: "markov"}.WithDefaults()
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	run := func() []selfreward.Result { return selfreward.ProcessBatch(context.Background(), b, e2ePrompts, o, 2) }
	t0 := time.Now()
	a := run()
	t.Logf("run took %v", time.Since(t0))
	weighted, paired := 0, 0
	for _, r := range a {
		if r.Dead {
			t.Fatalf("%s/%s dead: %s", r.Prompt.Lang, r.Prompt.ID, r.Reason)
		}
		if len(r.Candidates) != o.N || r.Judgments != (o.N-r.Empty)*o.J { // empty candidates are not judged
			t.Fatalf("%d candidates %d judgments", len(r.Candidates), r.Judgments)
		}
		for _, c := range r.Candidates {
			for _, s := range c.Scores {
				if s < 0 || s > 5 {
					t.Fatalf("score %v out of range", s)
				}
				if s != math.Trunc(s) {
					weighted++ // a parsed digit is whole; a weighted mean almost never is
				}
			}
		}
		if r.Paired {
			paired++
			if r.Pair.Margin < o.MinMargin || r.Pair.ChosenScore <= r.Pair.RejectedScore {
				t.Fatalf("bad pair %+v", r.Pair)
			}
		}
	}
	if weighted == 0 {
		t.Fatal("no probability-weighted score came through the HTTP path")
	}
	if paired == 0 {
		t.Fatal("no prompt was paired")
	}
	if b := run(); !reflect.DeepEqual(fmt.Sprint(a), fmt.Sprint(b)) {
		t.Fatal("two runs with the same seed differ")
	}
}

// TestProcessAgainstServeChat uses the chat API and the full rubric, as
// against vLLM: whatever the tiny model writes is parsed or counted.
func TestProcessAgainstServeChat(t *testing.T) {
	url := startServe(t)
	b := backend(t, url, nil)
	o := selfreward.Options{MaxTokens: 60, JudgeMaxTokens: 60, Seed: 3}.WithDefaults()
	for _, r := range selfreward.ProcessBatch(context.Background(), b, e2ePrompts, o, 4) {
		if r.Dead {
			t.Fatalf("dead: %s", r.Reason)
		}
		if r.Judgments != (o.N-r.Empty)*o.J { // empty candidates are not judged
			t.Fatalf("judgments %d", r.Judgments)
		}
		scored := 0
		for _, c := range r.Candidates {
			scored += len(c.Scores)
			if selfreward.IsEmptyResponse(c.Text) {
				continue
			}
			if len(c.Scores)+c.ParseFailures != o.J {
				t.Fatalf("candidate %d: %d scores + %d failures != J", c.Index, len(c.Scores), c.ParseFailures)
			}
		}
		if r.Paired == (r.Reason != "") {
			t.Fatalf("paired=%v reason=%q", r.Paired, r.Reason)
		}
		t.Logf("%s/%s: %d judgments, %d parse failures, paired=%v %s", r.Prompt.Lang, r.Prompt.ID, r.Judgments, r.ParseFailures, r.Paired, r.Reason)
	}
}

// TestSeedPerRunLetsServeBatch: with run-level seeds, concurrent prompts'
// requests carry equal settings, serve merges them, and the results are the
// same as against a server that does not batch.
func TestSeedPerRunLetsServeBatch(t *testing.T) {
	batched := serve.NewHandler(engine, serve.Options{BatchWindow: 20 * time.Millisecond, MaxBatchPrompts: 8, MaxConcurrent: 2})
	bs := httptest.NewServer(batched)
	defer bs.Close()
	plain := serve.NewHandler(engine, serve.Options{MaxConcurrent: 2})
	ps := httptest.NewServer(plain)
	defer ps.Close()
	o := selfreward.Options{MaxTokens: 40, JudgeMaxTokens: 3, ScoreCue: "Score: ", MinMargin: 0.1, Seed: 2, SeedPerRun: true}.WithDefaults()
	cfg := func(c *selfreward.HTTPConfig) { c.API = "completions" }
	a := selfreward.ProcessBatch(context.Background(), backend(t, bs.URL, cfg), e2ePrompts, o, 4)
	b := selfreward.ProcessBatch(context.Background(), backend(t, ps.URL, cfg), e2ePrompts, o, 4)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatal("batched and unbatched servers disagree")
	}
	if batched.EngineCalls() >= plain.EngineCalls() {
		t.Fatalf("no merging: %d engine calls batched, %d plain", batched.EngineCalls(), plain.EngineCalls())
	}
	t.Logf("engine calls: %d batched, %d plain", batched.EngineCalls(), plain.EngineCalls())
}
