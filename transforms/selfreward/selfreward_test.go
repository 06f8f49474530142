package selfreward

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/congrad-beam/congrad/schemas"
	sr "github.com/congrad-beam/congrad/selfreward"
	"github.com/congrad-beam/congrad/serve"
	"github.com/congrad-beam/congrad/serve/markov"
)

func TestMain(m *testing.M) { ptest.MainWithDefault(m, "prism") }

func init() {
	register.Function1x1(pairKey)
	register.Function1x1(deadKey)
	register.Function1x1(promptKey)
	register.Function1x1(pairLine)
	register.Function1x1(deadLine)
	register.Function1x1(downReason)
}

// downReason: with the server down, each prompt is invalid or failed with
// the server's status in its reason.
func downReason(line string) bool {
	return strings.Contains(line, "|invalid:") ||
		strings.Contains(line, "|backend:error: generate: POST http://127.0.0.1:") && strings.Contains(line, "HTTP 503: model not loaded")
}

// Projections to strings so passert compares what matters, exactly.
func pairKey(p schemas.Pair) string       { return p.Lang + "/" + p.PromptID }
func deadKey(d schemas.DeadLetter) string { return d.Source }
func promptKey(p schemas.Prompt) string   { return p.Lang + "/" + p.ID }
func pairLine(p schemas.Pair) string {
	return fmt.Sprintf("%s|%q|%q|%.9f|%.9f|%v|%v", p.PairID, p.Chosen, p.Rejected, p.ChosenScore, p.RejectedScore, p.ChosenScores, p.RejectedScores)
}
func deadLine(d schemas.DeadLetter) string { return d.Source + "|" + d.Reason }

var engine = markov.OverlapJudge{Engine: markov.New("", 4)}

func startServe(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := serve.Start(ctx, "127.0.0.1:0", engine, serve.Options{MaxConcurrent: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); s.Close() })
	return s.URL()
}

func testOptions(url string) Options {
	return Options{
		Core: sr.Options{N: 3, J: 2, MaxTokens: 60, JudgeMaxTokens: 3, ScoreCue: "Score: ", MinMargin: 0.3, Seed: 5,
			MaxPromptChars: 200, MinMarginByLang: map[string]float64{"ja": 4.9}},
		Backend:   sr.HTTPConfig{BaseURL: url, Model: "tiny", API: "completions", Timeout: 5 * time.Second, BackoffBase: time.Millisecond, BackoffMax: 10 * time.Millisecond},
		BatchSize: 3,
	}
}

func testPrompts() []schemas.Prompt {
	ps := []schemas.Prompt{
		{ID: "1", Lang: "en", Prompt: "Why does water boil at a lower temperature in the mountains?"},
		{ID: "2", Lang: "en", Prompt: "How do I make tea?"},
		{ID: "3", Lang: "en", Prompt: "What is a prime number?"},
		{ID: "1", Lang: "de", Prompt: "Warum kocht Wasser in den Bergen früher?"},
		{ID: "2", Lang: "de", Prompt: "Was ist Photosynthese?"},
		{ID: "1", Lang: "fr", Prompt: "Pourquoi l'eau bout-elle plus tôt en montagne ?"},
		{ID: "1", Lang: "zh", Prompt: "水为什么在山上更早沸腾？"},
		{ID: "1", Lang: "ja", Prompt: "水は山の上でなぜ早く沸騰しますか？"},
		{ID: "1", Lang: "ru", Prompt: "Почему вода кипит на высоте раньше?"},
		{ID: "empty", Lang: "en", Prompt: "   "},
		{ID: "long", Lang: "de", Prompt: strings.Repeat("Wort ", 60)},
		{ID: "", Lang: "es", Prompt: "¿Sin identificador?"},
	}
	return ps
}

// TestPairsMatchesDirectAndAccounts runs the transform on Prism against
// congrad serve on 127.0.0.1 and checks (1) pairs and dead letters equal
// what the Beam-free code gives for the same prompts, (2) every prompt
// leaves exactly once, (3) the counters add up.
func TestPairsMatchesDirectAndAccounts(t *testing.T) {
	url := startServe(t)
	opts := testOptions(url)
	prompts := testPrompts()

	b, err := sr.NewHTTPBackend(opts.Backend)
	if err != nil {
		t.Fatal(err)
	}
	core := opts.withDefaults().Core
	var wantPairs, wantDead, allKeys []any
	wantCands, wantEmpty, nPaired, nDropped, nDead := 0, 0, 0, 0, 0
	for _, r := range sr.ProcessBatch(context.Background(), b, prompts, core, 4) {
		allKeys = append(allKeys, promptKey(r.Prompt))
		wantCands += len(r.Candidates)
		wantEmpty += r.Empty
		switch {
		case r.Paired:
			nPaired++
			wantPairs = append(wantPairs, pairLine(r.Pair))
		case sr.IsDrop(r.Reason):
			nDropped++
			wantDead = append(wantDead, deadLine(r.DeadLetter()))
		default:
			nDead++
			wantDead = append(wantDead, deadLine(r.DeadLetter()))
		}
	}
	if nPaired == 0 || nDropped == 0 || nDead != 3 {
		t.Fatalf("fixture should give pairs, drops and 3 dead letters; got %d %d %d", nPaired, nDropped, nDead)
	}

	p, s := beam.NewPipelineWithRoot()
	in := beam.CreateList(s, prompts)
	pairs, cands, dead := Pairs(s, in, opts)
	passert.Equals(s, beam.ParDo(s, pairLine, pairs), wantPairs...)
	passert.Equals(s, beam.ParDo(s, deadLine, dead), wantDead...)
	dropped, failed := SplitDead(s, dead)
	passert.Count(s, dropped, "dropped", nDropped)
	passert.Count(s, failed, "failed", nDead)
	passert.Count(s, cands, "candidates", wantCands)
	out := beam.Flatten(s, beam.ParDo(s, pairKey, pairs), beam.ParDo(s, deadKey, dead))
	passert.Equals(s, out, allKeys...) // each prompt exactly once

	res, err := ptest.RunWithMetrics(p)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, c := range res.Metrics().Query(func(r beam.MetricResult) bool { return r.Namespace() == "selfreward" }).Counters() {
		got[c.Name()] += c.Result()
	}
	if got["prompts"] != int64(len(prompts)) || got["pairs"]+got["dropped"]+got["dead"] != got["prompts"] ||
		got["pairs"] != int64(nPaired) || got["dead"] != 3 || got["candidates"] != int64(wantCands) ||
		got["empty_candidates"] != int64(wantEmpty) || // empty candidates are not judged:
		got["judgments"] != int64((wantCands-wantEmpty)*core.J) || got["invalid:empty_prompt"] != 1 || got["prompts/en"] != 4 {
		t.Fatalf("counters do not add up: %v", got)
	}
	t.Logf("counters: %v", got)
}

// TestPairsServerDown: a server that only answers 500 sends every valid
// prompt to the dead-letter output with the reason, and the run finishes.
func TestPairsServerDown(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "model not loaded", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	opts := testOptions(down.URL)
	opts.Backend.MaxRetries = 1
	prompts := testPrompts()
	p, s := beam.NewPipelineWithRoot()
	pairs, cands, dead := Pairs(s, beam.CreateList(s, prompts), opts)
	passert.Empty(s, pairs)
	passert.Empty(s, cands)
	passert.Count(s, dead, "dead", len(prompts))
	passert.True(s, beam.ParDo(s, deadLine, dead), downReason)
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}
}

func TestTryPairsRejectsAtConstruction(t *testing.T) {
	_, s := beam.NewPipelineWithRoot()
	if _, _, _, err := TryPairs(s, beam.Create(s, "not a prompt"), testOptions("http://127.0.0.1:1")); err == nil {
		t.Error("PCollection<string> accepted")
	}
	prompts := beam.CreateList(s, testPrompts())
	bad := testOptions("http://127.0.0.1:1")
	bad.Core.N = 1
	if _, _, _, err := TryPairs(s, prompts, bad); err == nil {
		t.Error("N=1 accepted")
	}
	bad = testOptions("http://127.0.0.1:1")
	bad.Backend.API = "chat"
	if _, _, _, err := TryPairs(s, prompts, bad); err == nil {
		t.Error("score cue with the chat API accepted")
	}
	bad = testOptions("ftp://x")
	if _, _, _, err := TryPairs(s, prompts, bad); err == nil {
		t.Error("ftp URL accepted")
	}
}

// TestPairsFlakyServerSameResult: a server that fails every third request
// (503) and garbles every fifth (truncated JSON) gives the same pairs and
// dead letters as a clean one, because retries repeat the seeded request.
func TestPairsFlakyServerSameResult(t *testing.T) {
	clean := startServe(t)
	real := serve.NewHandler(engine, serve.Options{MaxConcurrent: 2})
	var n atomic.Int64
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch k := n.Add(1); {
		case k%3 == 0:
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case k%5 == 0:
			w.Write([]byte(`{"choices":[{"index":0,"te`))
		default:
			real.ServeHTTP(w, r)
		}
	}))
	defer flaky.Close()

	prompts := testPrompts()
	opts := testOptions(clean)
	b, err := sr.NewHTTPBackend(opts.Backend)
	if err != nil {
		t.Fatal(err)
	}
	var wantPairs, wantDead []any
	for _, r := range sr.ProcessBatch(context.Background(), b, prompts, opts.withDefaults().Core, 4) {
		if r.Paired {
			wantPairs = append(wantPairs, pairLine(r.Pair))
		} else {
			wantDead = append(wantDead, deadLine(r.DeadLetter()))
		}
	}
	opts.Backend.BaseURL = flaky.URL
	opts.Backend.MaxRetries = 6
	p, s := beam.NewPipelineWithRoot()
	pairs, _, dead := Pairs(s, beam.CreateList(s, prompts), opts)
	passert.Equals(s, beam.ParDo(s, pairLine, pairs), wantPairs...)
	passert.Equals(s, beam.ParDo(s, deadLine, dead), wantDead...)
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}
	if n.Load() < 10 {
		t.Fatalf("only %d requests reached the flaky server", n.Load())
	}
}
