package selfreward

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/congrad-beam/congrad/schemas"
	sr "github.com/congrad-beam/congrad/selfreward"
)

// benchPrompts reads the shared 10-language fixture and repeats it (with
// fresh ids) up to n prompts.
func benchPrompts(tb testing.TB, n int) []schemas.Prompt {
	files, _ := filepath.Glob("../../testdata/prompts/*.jsonl")
	var base []schemas.Prompt
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			tb.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			var r struct{ ID, Lang, Prompt string }
			if json.Unmarshal(sc.Bytes(), &r) == nil && r.Prompt != "" {
				base = append(base, schemas.Prompt{ID: r.ID, Lang: r.Lang, Prompt: r.Prompt})
			}
		}
		fh.Close()
	}
	if len(base) == 0 {
		base = testPrompts()[:9]
	}
	out := make([]schemas.Prompt, n)
	for i := range out {
		p := base[i%len(base)]
		p.ID = p.ID + "-" + strconv.Itoa(i/len(base))
		out[i] = p
	}
	return out
}

// BenchmarkOverhead measures prompts/s through Pairs on Prism against congrad
// serve on 127.0.0.1, and through the same Beam-free code (ProcessBatch in
// batches of the same size and parallelism) against the same server, in one
// run; the ratio is the cost of Beam (pipeline start, encoding, shuffle).
// It also times a plain one-prompt-at-a-time loop (vs_loop_x), which the
// transform beats because it keeps several prompts in flight.
// CONGRAD_BENCH_PROMPTS sets the number of prompts (default 800, enough to
// amortise the pipeline start), CONGRAD_BENCH_PARALLEL the prompts in flight.
func BenchmarkOverhead(b *testing.B) {
	n := 800
	if v, err := strconv.Atoi(os.Getenv("CONGRAD_BENCH_PROMPTS")); err == nil && v > 0 {
		n = v
	}
	url := startServe(b)
	opts := testOptions(url)
	opts.Core.MaxTokens = 64
	opts.Core.MaxPromptChars = 0
	opts.BatchSize, opts.Parallel = 16, 8
	if v, err := strconv.Atoi(os.Getenv("CONGRAD_BENCH_PARALLEL")); err == nil && v > 0 {
		opts.Parallel = v
	}
	prompts := benchPrompts(b, n)
	backend, err := sr.NewHTTPBackend(opts.Backend)
	if err != nil {
		b.Fatal(err)
	}
	core := opts.withDefaults().Core

	var loop, direct, beamT time.Duration
	for i := 0; i < b.N; i++ {
		// One prompt at a time: the plain loop a script would write.
		start := time.Now()
		for _, p := range prompts {
			sr.ProcessPrompt(context.Background(), backend, p, core)
		}
		loop += time.Since(start)

		start = time.Now()
		done := 0
		for s := 0; s < len(prompts); s += opts.BatchSize {
			done += len(sr.ProcessBatch(context.Background(), backend, prompts[s:min(s+opts.BatchSize, len(prompts))], core, opts.Parallel))
		}
		direct += time.Since(start)
		if done != n {
			b.Fatalf("direct processed %d of %d", done, n)
		}

		start = time.Now()
		p, s := beam.NewPipelineWithRoot()
		pairs, _, dead := Pairs(s, beam.CreateList(s, prompts), opts)
		passert.Count(s, beam.Flatten(s, beam.ParDo(s, pairKey, pairs), beam.ParDo(s, deadKey, dead)), "accounted", n)
		if err := ptest.Run(p); err != nil {
			b.Fatal(err)
		}
		beamT += time.Since(start)
	}
	b.ReportMetric(float64(n*b.N)/loop.Seconds(), "loop_prompts/s")
	b.ReportMetric(float64(n*b.N)/direct.Seconds(), "direct_prompts/s")
	b.ReportMetric(float64(n*b.N)/beamT.Seconds(), "prism_prompts/s")
	b.ReportMetric(beamT.Seconds()/direct.Seconds(), "overhead_x")
	b.ReportMetric(beamT.Seconds()/loop.Seconds(), "vs_loop_x")
}
