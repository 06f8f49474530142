// Package selfreward is the Beam transform of the self-rewarding step
// (METHOD.md §1): prompts in, preference pairs, scored candidates and
// dead-letter rows out. The logic lives in the Beam-free package
// github.com/congrad-beam/congrad/selfreward; this package batches prompts
// per language within bundles, holds one HTTP backend per worker and counts.
package selfreward

import (
	"context"
	"fmt"
	"reflect"
	"sort"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/congrad-beam/congrad/schemas"
	sr "github.com/congrad-beam/congrad/selfreward"
)

// Options configure Pairs.
type Options struct {
	Core    sr.Options    // N, J, sampling, rubric, margins, seed... (zero: METHOD.md defaults)
	Backend sr.HTTPConfig // the OpenAI-compatible server (vLLM, TGI, llama.cpp, Ollama, congrad serve)
	// BatchSize is how many prompts of one language a worker buffers before
	// sending them together (default 16); the rest go at the end of the bundle.
	BatchSize int
	// Parallel is how many prompts of a batch are in flight at once (default
	// 8). Requests also obey Backend.MaxConcurrency, shared per worker.
	Parallel int
}

func (o Options) withDefaults() Options {
	o.Core = o.Core.WithDefaults()
	if o.BatchSize <= 0 {
		o.BatchSize = 16
	}
	if o.Parallel <= 0 {
		o.Parallel = 8
	}
	return o
}

// Pairs runs self-rewarding generation and judging.
//
//	PCollection<schemas.Prompt> -> (PCollection<schemas.Pair>,
//	    PCollection<schemas.Candidate>, PCollection<schemas.DeadLetter>)
//
// Every prompt leaves exactly once: as a pair, or as a dead-letter row whose
// Reason starts with "drop:" (no usable pair: fewer than 2 non-empty
// candidates, too few scored candidates, all tie, margin below min_margin) or
// with "invalid:"/"backend:" (bad input, server failure after retries).
// Candidates of paired and dropped prompts are all emitted, with every judge
// score, for audit; candidates with an empty response are emitted unjudged
// and counted as "empty_candidates", and are never paired. Intended for the
// global window (batch pipelines): batches span elements of one bundle.
//
//	pairs, cands, dead := selfreward.Pairs(s, prompts, selfreward.Options{
//		Backend: sr.HTTPConfig{BaseURL: "http://127.0.0.1:8000", Model: "m"}})
func Pairs(s beam.Scope, prompts beam.PCollection, opts Options) (pairs, candidates, dead beam.PCollection) {
	pairs, candidates, dead, err := TryPairs(s, prompts, opts)
	if err != nil {
		panic(err)
	}
	return pairs, candidates, dead
}

// TryPairs is Pairs returning construction errors instead of panicking.
func TryPairs(s beam.Scope, prompts beam.PCollection, opts Options) (pairs, candidates, dead beam.PCollection, err error) {
	s = s.Scope("selfreward.Pairs")
	if t := prompts.Type().Type(); t != reflect.TypeOf(schemas.Prompt{}) {
		return pairs, candidates, dead, fmt.Errorf("selfreward.Pairs: input must be PCollection<schemas.Prompt>, got %v", t)
	}
	opts = opts.withDefaults()
	if err := opts.Core.Validate(); err != nil {
		return pairs, candidates, dead, fmt.Errorf("selfreward.Pairs: %w", err)
	}
	if _, err := sr.NewHTTPBackend(opts.Backend); err != nil {
		return pairs, candidates, dead, fmt.Errorf("selfreward.Pairs: %w", err)
	}
	if opts.Core.ScoreCue != "" && opts.Backend.API != "completions" {
		// Otherwise every prompt would fail at run time with the same reason.
		return pairs, candidates, dead, fmt.Errorf("selfreward.Pairs: a score cue needs Backend.API \"completions\", not %q", opts.Backend.API)
	}
	// Reshuffle so that prompts read from one file shard spread over workers.
	shuffled := beam.Reshuffle(s, prompts)
	fn := &pairsFn{Opts: opts.Core, Backend: opts.Backend, BatchSize: opts.BatchSize, Parallel: opts.Parallel}
	pairs, candidates, dead = beam.ParDo3(s, fn, shuffled)
	return pairs, candidates, dead, nil
}

// pairsFn buffers prompts per language and processes a language's buffer
// when it reaches BatchSize, and every buffer at the end of the bundle.
type pairsFn struct {
	Opts      sr.Options
	Backend   sr.HTTPConfig
	BatchSize int
	Parallel  int

	backend sr.Backend
	buf     map[string][]schemas.Prompt
}

func (f *pairsFn) Setup() error {
	// One backend per worker process and config: DoFn instances share the
	// connection pool and the concurrency bound.
	b, err := sr.SharedHTTPBackend(f.Backend)
	if err != nil {
		return fmt.Errorf("selfreward: backend: %w", err)
	}
	f.backend = b
	return nil
}

func (f *pairsFn) StartBundle(_ context.Context, _ func(schemas.Pair), _ func(schemas.Candidate), _ func(schemas.DeadLetter)) {
	f.buf = map[string][]schemas.Prompt{}
}

func (f *pairsFn) ProcessElement(ctx context.Context, p schemas.Prompt, ep func(schemas.Pair), ec func(schemas.Candidate), ed func(schemas.DeadLetter)) {
	f.buf[p.Lang] = append(f.buf[p.Lang], p)
	if len(f.buf[p.Lang]) >= f.BatchSize {
		f.flush(ctx, p.Lang, ep, ec, ed)
	}
}

func (f *pairsFn) FinishBundle(ctx context.Context, ep func(schemas.Pair), ec func(schemas.Candidate), ed func(schemas.DeadLetter)) {
	langs := make([]string, 0, len(f.buf))
	for l := range f.buf {
		langs = append(langs, l)
	}
	sort.Strings(langs)
	for _, l := range langs {
		f.flush(ctx, l, ep, ec, ed)
	}
}

func (f *pairsFn) flush(ctx context.Context, lang string, ep func(schemas.Pair), ec func(schemas.Candidate), ed func(schemas.DeadLetter)) {
	batch := f.buf[lang]
	delete(f.buf, lang)
	if len(batch) == 0 {
		return
	}
	// Batch sizes show whether bundles are large enough to keep the server busy.
	beam.NewDistribution("selfreward", "batch_size").Update(ctx, int64(len(batch)))
	for _, r := range sr.ProcessBatch(ctx, f.backend, batch, f.Opts, f.Parallel) {
		count(ctx, r)
		for _, c := range r.Candidates {
			ec(c)
		}
		if r.Paired {
			ep(r.Pair)
		} else {
			ed(r.DeadLetter())
		}
	}
}

// SplitDead separates the dead-letter output of Pairs into prompts that were
// dropped by the method (no pair worth keeping: Reason "drop:...") and prompts
// that failed (bad input, server errors), for reports that count them apart.
//
//	PCollection<schemas.DeadLetter> -> (dropped, failed PCollection<schemas.DeadLetter>)
func SplitDead(s beam.Scope, dead beam.PCollection) (dropped, failed beam.PCollection) {
	s = s.Scope("selfreward.SplitDead")
	return beam.ParDo2(s, splitDead, dead)
}

func splitDead(d schemas.DeadLetter, dropped, failed func(schemas.DeadLetter)) {
	if sr.IsDrop(d.Reason) {
		dropped(d)
	} else {
		failed(d)
	}
}

// count updates the stage counters, each also per language
// ("pairs" and "pairs/de").
func count(ctx context.Context, r sr.Result) {
	lang := r.Prompt.Lang
	if lang == "" {
		lang = "none"
	}
	inc := func(name string, n int) {
		if n == 0 {
			return
		}
		beam.NewCounter("selfreward", name).Inc(ctx, int64(n))
		beam.NewCounter("selfreward", name+"/"+lang).Inc(ctx, int64(n))
	}
	inc("prompts", 1)
	inc("candidates", len(r.Candidates))
	inc("judgments", r.Judgments)
	inc("parse_failures", r.ParseFailures)
	inc("empty_candidates", r.Empty)
	switch {
	case r.Paired:
		inc("pairs", 1)
	case sr.IsDrop(r.Reason):
		inc("dropped", 1)
		inc(sr.ReasonCode(r.Reason), 1)
	default:
		inc("dead", 1)
		inc(sr.ReasonCode(r.Reason), 1)
	}
}

func init() {
	register.DoFn5x0[context.Context, schemas.Prompt, func(schemas.Pair), func(schemas.Candidate), func(schemas.DeadLetter)](&pairsFn{})
	register.Emitter1[schemas.Pair]()
	register.Emitter1[schemas.Candidate]()
	register.Emitter1[schemas.DeadLetter]()
	register.Function3x0(splitDead)
	beam.RegisterType(reflect.TypeOf(schemas.Prompt{}))
	beam.RegisterType(reflect.TypeOf(schemas.Pair{}))
	beam.RegisterType(reflect.TypeOf(schemas.Candidate{}))
	beam.RegisterType(reflect.TypeOf(schemas.DeadLetter{}))
}
