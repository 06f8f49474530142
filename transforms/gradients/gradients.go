// Package gradients is the per-pair gradient stage as a Beam transform: each
// preference pair's LP-DPO gradient at the model M_t, sketched on the device
// (gpu/dpo), leaves as a schemas.Sketch with the pair's loss, z and reference
// log-probabilities. Full gradients never reach Beam.
//
//	sketches, dead := gradients.Sketches(s, pairs, gradients.Options{Model: "tiny", Spec: spec})
//
// The model is loaded once per worker process (model.Open's process-wide
// cache) and one Extractor per option set is shared by every DoFn instance.
//
// Batches are cut within a bundle, with no shuffle before the stage, so a
// pair's gradient is computed as soon as its batch fills: in `congrad run`
// extraction overlaps generation. A pair's result does not depend on its
// batch mates, so a rerun gives byte-identical sketches whatever the
// runner's bundling:
//
//   - a pair only shares a device call with pairs of its own padded length T
//     (dpo.PadLen of the pair's own token length, see padClass): the
//     backend's reductions over T round differently for another T;
//   - every call has the fixed shape of Batch+padSlots rows (short calls are
//     padded with masked rows), and its last padSlots rows are always
//     padding: matrix-multiply kernels treat the tail of the row dimension
//     apart (GoMLX's non-SIMD kernel sums the last rows mod 3 in another
//     order), so a real pair never sits there;
//   - elsewhere, rows of one shape are computed independently, whatever
//     the other rows hold and at whichever row a pair sits
//     (TestPairResultIndependentOfBatchMates, TestNoSlotIsSpecial).
package gradients

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"reflect"
	"sort"
	"sync"
	"unicode/utf8"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/congrad/vec"
	"github.com/congrad-beam/congrad/gpu/dpo"
	"github.com/congrad-beam/congrad/gpu/model"
	"github.com/congrad-beam/congrad/schemas"
)

// Stage names this stage in dead-letter rows.
const Stage = "gradients"

// Options configure the stage. Zero values take the defaults noted.
type Options struct {
	Model    string      // model.Open reference: "tiny" (default), "tiny:seed=N" or a checkpoint dir
	Spec     sketch.Spec // sketch contract (default sketch.DefaultSpec())
	Beta     float64     // DPO β (default 0.1)
	Alpha    float64     // length-margin α (default 0)
	LoRARank int         // LoRA rank (default 8)
	MaxLen   int         // tokens per sequence (default: the model's, at most 512)
	Batch    int         // pairs per device call (default 8; the call has padSlots more padding rows)
	Steps    int         // mini-batch steps τ assigned by id hash, for the ema aggregate (default 16)
}

// Validate fills defaults and checks the options.
func (o *Options) Validate() error {
	if o.Model == "" {
		o.Model = "tiny"
	}
	if o.Spec == (sketch.Spec{}) {
		o.Spec = sketch.DefaultSpec()
	}
	if err := o.Spec.Validate(); err != nil {
		return fmt.Errorf("gradients: %w", err)
	}
	if o.Batch == 0 {
		o.Batch = 8
	}
	if o.Steps == 0 {
		o.Steps = 16
	}
	if o.Batch < 1 || o.Steps < 1 || o.MaxLen < 0 || o.LoRARank < 0 {
		return fmt.Errorf("gradients: batch=%d steps=%d max_len=%d lora_rank=%d: want positive values",
			o.Batch, o.Steps, o.MaxLen, o.LoRARank)
	}
	return nil
}

// padSlots is how many rows at the end of every device call are always
// padding: 1, so that the tail rows of the model's [2·rows·T, ·] matrix
// products belong to a padding pair; 2 with the Gaussian sketch, whose
// [rows, d] × [d, k] projection has a tail of up to 2 rows (measured with
// GoMLX's Go backend: with fewer, the pair in the last real row gets other
// bits, TestNoSlotIsSpecial).
func (o Options) padSlots() int {
	if o.Spec.Method == sketch.Gaussian {
		return 2
	}
	return 1
}

func (o Options) dpo() dpo.Options {
	return dpo.Options{Beta: o.Beta, Alpha: o.Alpha, LoRA: model.LoRAOptions{Rank: o.LoRARank},
		MaxLen: o.MaxLen, Batch: o.Batch + o.padSlots(), Sketch: o.Spec}
}

// Sketches computes one sketch per pair; pairs that cannot be processed
// (too long, empty, non-finite loss, ...) become dead letters with the reason.
// Pair ids are expected to be unique (selfreward's are); rows sharing an id
// are each extracted, and select dead-letters every one of them
// (duplicate_pair, duplicate_sketch).
//
//	PCollection<schemas.Pair> -> (PCollection<schemas.Sketch>, PCollection<schemas.DeadLetter>)
func Sketches(s beam.Scope, pairs beam.PCollection, opts Options) (sketches, dead beam.PCollection) {
	s = s.Scope("gradients.Sketches")
	if err := opts.Validate(); err != nil {
		panic(err)
	}
	if t := pairs.Type().Type(); t != reflect.TypeOf(schemas.Pair{}) {
		panic(fmt.Sprintf("gradients.Sketches: input must be PCollection<schemas.Pair>, got %v", t))
	}
	return beam.ParDo2(s, &extractFn{Opts: opts}, pairs)
}

func hash(id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	return h.Sum64()
}

// shared is the process-wide model and extractor of one option set: DoFn
// instances are many, the model and its compiled graphs should exist once.
type shared struct {
	m *model.Model
	x *dpo.Extractor
}

var extractors struct {
	sync.Mutex
	m map[string]*shared
}

func sharedFor(opts Options) (*shared, error) {
	key, _ := json.Marshal(opts)
	extractors.Lock()
	defer extractors.Unlock()
	if sh, ok := extractors.m[string(key)]; ok {
		return sh, nil
	}
	m, err := model.Open(opts.Model)
	if err != nil {
		return nil, fmt.Errorf("gradients: open model %q: %w", opts.Model, err)
	}
	x, err := dpo.NewExtractor(m, opts.dpo())
	if err != nil {
		return nil, fmt.Errorf("gradients: extractor for %q: %w", opts.Model, err)
	}
	if extractors.m == nil {
		extractors.m = map[string]*shared{}
	}
	sh := &shared{m: m, x: x}
	extractors.m[string(key)] = sh
	return sh, nil
}

// Extractor returns the process-wide extractor for opts. Its device calls
// have opts.Batch+padSlots rows; the stage gives it at most opts.Batch pairs
// of one padded length at a time.
func Extractor(opts Options) (*dpo.Extractor, error) {
	sh, err := sharedFor(opts)
	if err != nil {
		return nil, err
	}
	return sh.x, nil
}

// padClass is the padded length T the extractor uses for a batch holding
// only this pair (dpo.PadLen of its own length); false when the pair cannot
// be encoded (Extract then returns it with the reason, without a device call).
func (sh *shared) padClass(in dpo.Input) (int, bool) {
	o := sh.x.Options()
	e, err := dpo.Encode(sh.m, in, o.MaxLen, o.Truncate)
	if err != nil {
		return 0, false
	}
	return dpo.PadLen(e.Len(), o.MaxLen), true
}

func input(p schemas.Pair) dpo.Input {
	return dpo.Input{PairID: p.PairID, Prompt: p.Prompt, Chosen: p.Chosen, Rejected: p.Rejected}
}

// extracted is one finished device call: its pairs and their outputs.
type extracted struct {
	pairs []schemas.Pair
	outs  []dpo.Output
}

// queueDepth is how many full batches may wait for the worker before
// ProcessElement blocks (backpressure on the stage before, e.g. generation).
const queueDepth = 2

// extractFn buffers pairs per padded length, hands each full batch to a
// worker goroutine and returns at once, so the stages fused before it (in
// `congrad run`: generation) keep running while the device computes. Results
// are emitted from the bundle's own goroutine, in ProcessElement and
// FinishBundle (Beam emitters must not be called from other goroutines). The
// bundle's last, partial batches go out in FinishBundle.
type extractFn struct {
	Opts Options

	sh *shared
	// extract is sh.x.Extract; tests replace it.
	extract func([]dpo.Input) ([]dpo.Output, error)

	// per bundle
	buf  map[int][]schemas.Pair // by padded length
	jobs chan []schemas.Pair
	done chan struct{}
	mu   sync.Mutex
	out  []extracted
	err  error
}

func (f *extractFn) Setup() error {
	sh, err := sharedFor(f.Opts)
	if err != nil {
		return err
	}
	f.sh = sh
	if f.extract == nil {
		f.extract = sh.x.Extract
	}
	return nil
}

func (f *extractFn) StartBundle(_ context.Context, _ func(schemas.Sketch), _ func(schemas.DeadLetter)) {
	f.stop() // a failed bundle's worker, if any
	f.buf = map[int][]schemas.Pair{}
	f.out, f.err = nil, nil
	f.jobs = make(chan []schemas.Pair, queueDepth)
	f.done = make(chan struct{})
	go f.work(f.jobs, f.done)
}

// work runs the device calls of one bundle until jobs is closed. After a
// failed call it only drains the queue.
func (f *extractFn) work(jobs <-chan []schemas.Pair, done chan<- struct{}) {
	defer close(done)
	for ps := range jobs {
		f.mu.Lock()
		failed := f.err != nil
		f.mu.Unlock()
		if failed {
			continue
		}
		outs, err := f.safeExtract(ps)
		f.mu.Lock()
		if err != nil {
			f.err = fmt.Errorf("gradients: batch of %d pairs starting at %s: %w", len(ps), ps[0].PairID, err)
		} else {
			f.out = append(f.out, extracted{pairs: ps, outs: outs})
		}
		f.mu.Unlock()
	}
}

func (f *extractFn) safeExtract(ps []schemas.Pair) (outs []dpo.Output, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("extract panicked: %v", r)
		}
	}()
	in := make([]dpo.Input, len(ps))
	for i, p := range ps {
		in[i] = input(p)
	}
	outs, err = f.extract(in)
	if err == nil && len(outs) != len(ps) {
		err = fmt.Errorf("%d outputs for %d pairs", len(outs), len(ps))
	}
	return outs, err
}

// stop closes the queue and waits for the worker.
func (f *extractFn) stop() {
	if f.jobs == nil {
		return
	}
	close(f.jobs)
	<-f.done
	f.jobs, f.done = nil, nil
}

func (f *extractFn) Teardown() { f.stop() }

func (f *extractFn) ProcessElement(ctx context.Context, p schemas.Pair, emit func(schemas.Sketch), dead func(schemas.DeadLetter)) error {
	t, ok := f.sh.padClass(input(p))
	if !ok {
		// Unusable pair: Extract gives the reason without a device call.
		outs, err := f.safeExtract([]schemas.Pair{p})
		if err != nil {
			return fmt.Errorf("gradients: pair %s: %w", p.PairID, err)
		}
		f.emit(ctx, extracted{pairs: []schemas.Pair{p}, outs: outs}, emit, dead)
	} else {
		f.buf[t] = append(f.buf[t], p)
		if len(f.buf[t]) == f.Opts.Batch {
			f.jobs <- f.buf[t]
			delete(f.buf, t)
		}
	}
	return f.drain(ctx, emit, dead)
}

func (f *extractFn) FinishBundle(ctx context.Context, emit func(schemas.Sketch), dead func(schemas.DeadLetter)) error {
	ts := make([]int, 0, len(f.buf))
	for t := range f.buf {
		ts = append(ts, t)
	}
	sort.Ints(ts)
	for _, t := range ts {
		f.jobs <- f.buf[t]
	}
	f.buf = nil
	f.stop()
	return f.drain(ctx, emit, dead)
}

// drain emits the finished device calls; it returns the worker's error.
func (f *extractFn) drain(ctx context.Context, emit func(schemas.Sketch), dead func(schemas.DeadLetter)) error {
	f.mu.Lock()
	out, err := f.out, f.err
	f.out = nil
	f.mu.Unlock()
	if err != nil {
		return err
	}
	for _, e := range out {
		beam.NewDistribution("congrad.gradients", "batch_pairs").Update(ctx, int64(len(e.pairs)))
		f.emit(ctx, e, emit, dead)
	}
	return nil
}

func (f *extractFn) emit(ctx context.Context, e extracted, emit func(schemas.Sketch), dead func(schemas.DeadLetter)) {
	for i, o := range e.outs {
		p := e.pairs[i]
		if o.Err != "" {
			f.deadLetter(ctx, dead, p, o.Err)
			continue
		}
		if vec.CheckFinite(o.Sketch) != nil || math.IsNaN(o.Loss) || math.IsInf(o.Loss, 0) {
			f.deadLetter(ctx, dead, p, "non-finite gradient sketch or loss")
			continue
		}
		beam.NewCounter("congrad.gradients", "sketches."+p.Lang).Inc(ctx, 1)
		emit(toSketch(p, o, f.Opts.Steps))
	}
}

// toSketch is the stage's output row for pair p's extraction o.
func toSketch(p schemas.Pair, o dpo.Output, steps int) schemas.Sketch {
	return schemas.Sketch{PairID: p.PairID, Lang: p.Lang, Step: int64(hash("step:"+p.PairID) % uint64(steps)),
		Values: o.Sketch, Norm: vec.Norm(o.Sketch), Loss: o.Loss, Z: o.Z,
		RefChosenLogp: o.RefChosenLogp, RefRejectedLogp: o.RefRejectedLogp,
		ChosenTokens: o.ChosenTokens, RejectedTokens: o.RejectedTokens}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func (f *extractFn) deadLetter(ctx context.Context, dead func(schemas.DeadLetter), p schemas.Pair, reason string) {
	beam.NewCounter("congrad.gradients", "dead."+p.Lang).Inc(ctx, 1)
	dead(schemas.DeadLetter{Stage: Stage, Source: p.PairID, Row: -1, Reason: reason,
		Payload: truncate(fmt.Sprintf("lang=%s prompt=%q chosen=%q rejected=%q", p.Lang, p.Prompt, p.Chosen, p.Rejected), 600)})
}

func init() {
	register.DoFn4x1[context.Context, schemas.Pair, func(schemas.Sketch), func(schemas.DeadLetter), error](&extractFn{})
	register.Emitter1[schemas.Sketch]()
	register.Emitter1[schemas.DeadLetter]()
	beam.RegisterType(reflect.TypeOf(schemas.Pair{}))
	beam.RegisterType(reflect.TypeOf(schemas.Sketch{}))
	beam.RegisterType(reflect.TypeOf(schemas.DeadLetter{}))
}
