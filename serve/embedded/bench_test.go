package embedded_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/congrad-beam/congrad/gpu/model"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/selfreward"
	"github.com/congrad-beam/congrad/serve"
	"github.com/congrad-beam/congrad/serve/embedded"
)

// BenchmarkSelfRewardEmbedded: prompts/s of the self-rewarding step against
// the tiny GoMLX model behind serve on loopback, with and without request
// batching (BatchWindow + SeedPerRun). Same outputs either way.
func BenchmarkSelfRewardEmbedded(b *testing.B) {
	eng, err := embedded.New(model.NewTiny(1), 8)
	if err != nil {
		b.Fatal(err)
	}
	prompts := make([]schemas.Prompt, 16)
	for i := range prompts {
		prompts[i] = schemas.Prompt{ID: fmt.Sprint(i), Lang: "en", Prompt: fmt.Sprintf("Question %d: why is the sky blue?", i)}
	}
	o := selfreward.Options{N: 2, J: 1, MaxTokens: 24, JudgeMaxTokens: 1, ScoreCue: "Score: ", SeedPerRun: true, Seed: 1}.WithDefaults()
	for _, window := range []time.Duration{0, 5 * time.Millisecond} {
		b.Run(fmt.Sprintf("window=%v", window), func(b *testing.B) {
			opts := eng.ServeOptions()
			opts.BatchWindow, opts.MaxBatchPrompts = window, 4
			h := serve.NewHandler(eng, opts)
			srv := httptest.NewServer(h)
			defer srv.Close()
			be, err := selfreward.NewHTTPBackend(selfreward.HTTPConfig{BaseURL: srv.URL, API: "completions", Timeout: time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for _, r := range selfreward.ProcessBatch(context.Background(), be, prompts, o, 8) {
					if r.Dead {
						b.Fatal(r.Reason)
					}
				}
			}
			b.ReportMetric(float64(len(prompts)*b.N)/b.Elapsed().Seconds(), "prompts/s")
			b.ReportMetric(float64(h.EngineCalls())/float64(b.N), "engine_calls/op")
		})
	}
}
