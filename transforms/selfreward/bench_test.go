package selfreward

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
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

	runLoop := func() {
		// One prompt at a time: the plain loop a script would write.
		for _, p := range prompts {
			sr.ProcessPrompt(context.Background(), backend, p, core)
		}
	}
	runDirect := func() {
		done := 0
		for s := 0; s < len(prompts); s += opts.BatchSize {
			done += len(sr.ProcessBatch(context.Background(), backend, prompts[s:min(s+opts.BatchSize, len(prompts))], core, opts.Parallel))
		}
		if done != n {
			b.Fatalf("direct processed %d of %d", done, n)
		}
	}
	runBeam := func() {
		p, s := beam.NewPipelineWithRoot()
		pairs, _, dead := Pairs(s, beam.CreateList(s, prompts), opts)
		// Consume the outputs as a sink would. Left unconsumed, Prism v2.77
		// busy-polls a stage without outputs for as long as its bundle runs
		// (stage.Execute selects on an already-closed DataWait channel), which
		// on two cores takes half the CPU from the server: 3-4x slower.
		passert.Count(s, beam.Flatten(s, beam.ParDo(s, pairKey, pairs), beam.ParDo(s, deadKey, dead)), "accounted", n)
		res, err := ptest.RunWithMetrics(p)
		if err != nil {
			b.Fatal(err)
		}
		// Accounting from the counters, so the timing includes no assertion stages.
		got := map[string]int64{}
		for _, c := range res.Metrics().Query(func(r beam.MetricResult) bool { return r.Namespace() == "selfreward" }).Counters() {
			got[c.Name()] += c.Result()
		}
		if got["prompts"] != int64(n) || got["pairs"]+got["dropped"]+got["dead"] != int64(n) {
			b.Fatalf("accounting: %v", got)
		}
	}
	timed := func(f func()) time.Duration { t := time.Now(); f(); return time.Since(t) }
	// The fixed cost of a Prism job (start, graph, teardown): the same
	// pipeline over no prompts.
	runEmpty := func() {
		p, s := beam.NewPipelineWithRoot()
		pairs, _, dead := Pairs(s, beam.CreateList(s, []schemas.Prompt{}), opts)
		passert.Count(s, beam.Flatten(s, beam.ParDo(s, pairKey, pairs), beam.ParDo(s, deadKey, dead)), "accounted", 0)
		if err := ptest.Run(p); err != nil {
			b.Fatal(err)
		}
	}

	// The machine is shared, so load drifts: interleave the three and rotate
	// their order, and report the median of the per-round ratios as well.
	var loop, direct, beamT, fixed time.Duration
	var ratios []float64
	for i := 0; i < b.N; i++ {
		fixed += timed(runEmpty)
		var l, d, m time.Duration
		for k := 0; k < 3; k++ {
			switch (i + k) % 3 {
			case 0:
				l = timed(runLoop)
			case 1:
				d = timed(runDirect)
			case 2:
				m = timed(runBeam)
			}
		}
		loop, direct, beamT = loop+l, direct+d, beamT+m
		ratios = append(ratios, m.Seconds()/d.Seconds())
	}
	sort.Float64s(ratios)
	b.ReportMetric(ratios[len(ratios)/2], "median_overhead_x")
	b.ReportMetric(fixed.Seconds()/float64(b.N), "prism_fixed_s")
	b.ReportMetric((beamT-fixed).Seconds()/direct.Seconds(), "steady_overhead_x")
	b.ReportMetric(float64(n*b.N)/loop.Seconds(), "loop_prompts/s")
	b.ReportMetric(float64(n*b.N)/direct.Seconds(), "direct_prompts/s")
	b.ReportMetric(float64(n*b.N)/beamT.Seconds(), "prism_prompts/s")
	b.ReportMetric(beamT.Seconds()/direct.Seconds(), "overhead_x")
	b.ReportMetric(beamT.Seconds()/loop.Seconds(), "vs_loop_x")
}
