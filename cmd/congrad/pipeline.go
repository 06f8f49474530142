package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/congrad-beam/congrad/gpu/model"
	"github.com/congrad-beam/congrad/pipelines"
	"github.com/congrad-beam/congrad/pipelines/progress"
	"github.com/congrad-beam/congrad/runners"
	sr "github.com/congrad-beam/congrad/selfreward"
	"github.com/congrad-beam/congrad/serve"
	"github.com/congrad-beam/congrad/serve/embedded"
	"github.com/congrad-beam/congrad/serve/markov"
)

func runPipeline(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	o := newFlags(cmd, stdout)
	if err := o.parse(args); err != nil {
		return err // one line, usage; or flag.ErrHelp after printing the help
	}
	if err := o.validate(); err != nil {
		return err
	}
	ro := o.runnerOptions()
	if err := ro.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	// Validate every option before starting anything.
	cfg, err := o.pipelineConfig(o.backendURL)
	if err != nil {
		return err
	}
	local := (cmd == "run" || cmd == "generate") && o.backendURL == ""
	if local && (ro.Runner == runners.Dataflow || (ro.Runner == runners.Universal && ro.EnvironmentType != "LOOPBACK")) {
		return fmt.Errorf("%w: --runner=%s workers cannot reach an in-process model server: give --backend_url", errUsage, ro.Runner)
	}
	if err := o.checkLocal(ro); err != nil {
		return err
	}
	// One run per --out; inputs only through committed manifests (outguard.go).
	job, cfg, err := openJob(ctx, cmd, args, o, cfg, ro.DryRun, stderr)
	if err != nil {
		return err
	}
	defer job.Close()
	if !ro.DryRun {
		if err := checkInputs(ctx, cmd, cfg); err != nil {
			return err
		}
	}
	if !local && o.backendURL != "" && o.backendCheck && !ro.DryRun {
		if err := checkBackend(ctx, cfg.SelfReward.Backend); err != nil {
			return err
		}
	}
	defer sr.OnRetry(sr.OnRetry(retryPrinter(stderr, 10*time.Second)))
	if local {
		url, stop, err := startEngine(ctx, o.generator, o.modelRef, o.prompts, o.generatorCorpus, "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer stop()
		cfg.SelfReward.Backend.BaseURL = url
		fmt.Fprintf(stderr, "congrad: serving generator %q for generation and judging at %s\n", o.generator, url)
	}
	if ro.WorkersInProcess() && !ro.DryRun {
		// The workers share this disk: writers get their batches through
		// files, not through Prism's in-memory shuffle (lakeio.WriteOptions.SpillDir).
		dir, err := newSpillDir(os.TempDir())
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.SpillDir = dir
	}
	p, s := beam.NewPipelineWithRoot()
	switch cmd {
	case "run":
		err = pipelines.BuildRun(s, cfg)
	case "generate":
		err = pipelines.BuildGenerate(s, cfg)
	case "sketch":
		err = pipelines.BuildSketch(s, cfg)
	case "select":
		err = pipelines.BuildSelect(s, cfg)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}

	if err := job.Start(ctx, cfg); err != nil {
		return err
	}

	progress.Reset()
	start := time.Now()
	meter := progress.NewMeter(start, progressStages(cmd)...)
	done := make(chan struct{})
	if !o.quiet && o.progressEvery > 0 {
		go tick(time.Duration(o.progressEvery*float64(time.Second)), done, func() {
			fmt.Fprintln(stderr, meter.Line(time.Now(), backendStats()...))
		})
	}
	fmt.Fprintf(stderr, "congrad %s: runner=%s out=%s\n", cmd, ro.Runner, cfg.Out)
	res, err := runners.Run(ctx, ro, p)
	close(done)
	if err != nil {
		job.Fail(ctx, cfg, err)
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if !o.quiet {
		fmt.Fprintln(stderr, meter.Line(time.Now(), backendStats()...))
	}
	if ro.DryRun {
		return nil
	}
	if err := job.Commit(ctx, cfg, res); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	summarize(stdout, cmd, cfg, time.Since(start))
	if counts, ok := runCounts(res, inProcess(ro)); ok {
		return checkProduced(cmd, cfg, counts) // exit 1 when nothing useful came out
	}
	return nil
}

// startEngine serves a generator on addr: the self-rewarding stage then goes
// through the same OpenAI-compatible HTTP path as against vLLM or TGI.
//
// "model" serves the model itself (generation and judging). "markov" serves
// a seeded character-level Markov model with the overlap judge: the embedded
// tiny model is untrained, its judge answers never parse as a score, so a run
// that must produce pairs on a laptop uses markov for generation while the
// gradient stage still runs the model.
func startEngine(ctx context.Context, generator, ref, prompts, corpus, addr string) (string, func(), error) {
	var eng serve.Engine
	var so serve.Options
	switch generator {
	case "markov":
		text, err := markovCorpus(prompts, corpus)
		if err != nil {
			return "", nil, err
		}
		eng = markov.OverlapJudge{Engine: markov.New(text, 4)}
		so = serve.Options{Model: "markov", MaxConcurrent: 2}
	case "model":
		m, err := model.Open(ref)
		if err != nil {
			return "", nil, fmt.Errorf("open model %q: %w", ref, err)
		}
		e, err := embedded.New(m, 0)
		if err != nil {
			return "", nil, fmt.Errorf("model %q: %w", ref, err)
		}
		eng, so = e, e.ServeOptions()
	default:
		return "", nil, fmt.Errorf("%w: --generator=%q: want markov or model", errUsage, generator)
	}
	srv, err := serve.Start(ctx, addr, eng, so)
	if err != nil {
		return "", nil, fmt.Errorf("serve %s on %s: %w", generator, addr, err)
	}
	return srv.URL(), func() { srv.Close() }, nil
}

// summarize prints where the outputs are and, for local runs, the report's
// accounting.
func summarize(w io.Writer, cmd string, c pipelines.Config, took time.Duration) {
	fmt.Fprintf(w, "congrad %s finished in %s\n", cmd, took.Round(100*time.Millisecond))
	show := func(label, name string) {
		fmt.Fprintf(w, "  %-12s %s\n", label, c.Glob(name))
	}
	switch cmd {
	case "generate":
		show("pairs:", pipelines.OutPairs)
		show("candidates:", pipelines.OutCandidates)
		show("dead letters:", pipelines.OutDeadGen)
		return
	case "sketch":
		show("sketches:", pipelines.OutSketches)
		show("dead letters:", pipelines.OutDeadSketch)
		return
	case "run":
		show("pairs:", pipelines.OutPairs)
		show("sketches:", pipelines.OutSketches)
		show("dead (gen):", pipelines.OutDeadGen)
	}
	show("kept pairs:", pipelines.OutKept)
	show("dropped:", pipelines.OutDropped)
	show("decisions:", pipelines.OutDecisions)
	show("dead (sel):", pipelines.OutDeadSelect)
	dir := c.Out + "/" + pipelines.OutReportDir
	fmt.Fprintf(w, "  %-12s %s\n", "report:", dir+"/"+pipelines.ReportJSON)
	fmt.Fprintf(w, "  %-12s %s\n", "pictures:", strings.Join([]string{dir + "/" + pipelines.ConflictSVG,
		dir + "/" + pipelines.ScoresSVG, dir + "/" + pipelines.KeptSVG}, " "))
	if strings.Contains(c.Out, "://") {
		return
	}
	b, err := os.ReadFile(filepath.Join(dir, pipelines.ReportJSON))
	if err != nil {
		return
	}
	var r struct {
		Totals map[string]map[string]int64 `json:"totals"`
	}
	if json.Unmarshal(b, &r) != nil {
		return
	}
	stages := make([]string, 0, len(r.Totals))
	for st := range r.Totals {
		stages = append(stages, st)
	}
	sort.Strings(stages)
	for _, st := range stages {
		keys := make([]string, 0, len(r.Totals[st]))
		for k := range r.Totals[st] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s=%d", k, r.Totals[st][k]))
		}
		fmt.Fprintf(w, "  %-12s %s\n", st+":", strings.Join(parts, " "))
	}
}

func serveCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("congrad serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	addr := fs.String("addr", "127.0.0.1:8000", "listen address (host:port; port 0 picks a free one)")
	ref := fs.String("model", "tiny", "model: tiny | tiny:seed=N | a Hugging Face checkpoint directory")
	gen := fs.String("generator", "model", "what to serve: model (--model) | markov (seeded Markov text + overlap judge)")
	corpus := fs.String("generator_corpus", "testdata/prompts/answers.tsv", "markov: training text (empty: the built-in corpus)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fmt.Fprint(stdout, "Usage: congrad serve [--flag=value ...]\n\nOpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions, /v1/models) for the embedded model or the markov generator.\n\nFlags (default in parentheses):\n")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return err
		}
		return fmt.Errorf("%w: %v (see 'congrad serve --help')", errUsage, err)
	}
	if err := checkServe(fs, *addr, *gen, *ref); err != nil {
		return err
	}
	url, stop, err := startEngine(ctx, *gen, *ref, "testdata/prompts/*.jsonl", *corpus, *addr)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Fprintf(stdout, "congrad serve: %s (model %q) at %s (OpenAI-compatible: /v1/completions, /v1/chat/completions)\n", *gen, *ref, url)
	<-ctx.Done()
	return nil
}
