// Package aggregate turns per-pair sketches into per-language directions G_l
// (METHOD.md §4) and those into the consensus direction g* by cross-lingual
// PCGrad (§5). The maths lives in congrad/accum and congrad/pcgrad; this
// package only arranges it as Beam combines.
//
//	dirs := aggregate.PerLanguage(s, sketches, aggregate.Options{K: 8192})
//	cons := aggregate.Consensus(s, dirs, aggregate.Options{K: 8192, Seed: 1})
//
// Memory: one accumulator per language per bundle (mean: 80 bytes per
// coordinate, 655 KB at k=8192; ema: 8 bytes per coordinate), and the
// consensus combine holds L directions of k float32: O(L·k), independent of
// the number of pairs.
package aggregate

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/congrad-beam/congrad/congrad/accum"
	"github.com/congrad-beam/congrad/congrad/pcgrad"
	"github.com/congrad-beam/congrad/schemas"
)

// Methods for Options.Method.
const (
	Mean = "mean" // G_l = mean of the language's sketches (default)
	EMA  = "ema"  // G_l = mergeable EMA over per-step batch means
)

// Options configure the aggregation. K is required; the rest have defaults.
type Options struct {
	Method string  // mean (default) | ema
	Gamma  float64 // ema decay, in (0,1); default 0.9
	K      int     // sketch dimension; every sketch must have exactly K values
	Seed   uint64  // PCGrad permutation seed
}

// Validate fills defaults and rejects unusable options at construction time.
func (o *Options) Validate() error {
	if o.Method == "" {
		o.Method = Mean
	}
	if o.Method != Mean && o.Method != EMA {
		return fmt.Errorf("aggregate: method %q: want mean or ema", o.Method)
	}
	if o.Gamma == 0 {
		o.Gamma = 0.9
	}
	if !(o.Gamma > 0 && o.Gamma < 1) {
		return fmt.Errorf("aggregate: gamma %v: want 0 < gamma < 1", o.Gamma)
	}
	if o.K < 1 {
		return fmt.Errorf("aggregate: sketch dimension K=%d: want >= 1", o.K)
	}
	return nil
}

// Direction is one language's aggregated direction G_l.
type Direction struct {
	Lang   string
	Values []float32
	Count  int64 // sketches (mean) or mini-batches (ema) that went into it
}

// Consensus is the output of cross-lingual PCGrad, one element per run. The
// matrices are flattened row-major (Beam encodes flat slices of structs
// most simply); use the accessors.
type Consensus struct {
	Langs       []string  // sorted
	G           []float32 // g*
	Norm        float64   // ||g*||
	Counts      []int64   // Direction.Count per language
	Norms       []float64 // ||G_l||
	Cosine      []float64 // L×L cos(G_i, G_j), row-major
	Orders      []int     // L×(L-1) PCGrad permutations, row-major
	Projections int       // projections that fired
	Zero        []string  // languages with a zero direction
}

// CosineAt returns cos(G_i, G_j).
func (c Consensus) CosineAt(i, j int) float64 { return c.Cosine[i*len(c.Langs)+j] }

// Order returns the languages, in order, that language i was projected against.
func (c Consensus) Order(i int) []string {
	n := len(c.Langs) - 1
	out := make([]string, 0, n)
	for _, j := range c.Orders[i*n : (i+1)*n] {
		out = append(out, c.Langs[j])
	}
	return out
}

// PerLanguage aggregates sketches into one direction per language.
//
//	PCollection<schemas.Sketch> -> PCollection<Direction>
//
// Sketches must already be valid (K finite values; see filter.Check): an
// invalid one fails the job here, because dropping it would be silent.
func PerLanguage(s beam.Scope, sketches beam.PCollection, opts Options) beam.PCollection {
	s = s.Scope("aggregate.PerLanguage")
	if err := opts.Validate(); err != nil {
		panic(err)
	}
	if t := sketches.Type().Type(); t != reflect.TypeOf(schemas.Sketch{}) {
		panic(fmt.Sprintf("aggregate.PerLanguage: input must be PCollection<schemas.Sketch>, got %v", t))
	}
	if opts.Method == EMA {
		// Batch means per (language, step), then the EMA over steps.
		byStep := beam.ParDo(s, keyByLangStep, sketches)
		means := beam.CombinePerKey(s, &meanFn{K: opts.K}, byStep)
		batches := beam.ParDo(s, toBatch, means)
		dirs := beam.CombinePerKey(s, &emaFn{K: opts.K, Gamma: opts.Gamma}, batches)
		return beam.ParDo(s, toDirection, dirs)
	}
	byLang := beam.ParDo(s, keyByLang, sketches)
	dirs := beam.CombinePerKey(s, &meanFn{K: opts.K}, byLang)
	return beam.ParDo(s, toDirection, dirs)
}

func keyByLang(sk schemas.Sketch) (string, []float32) { return sk.Lang, sk.Values }

// keyByLangStep keys by "lang\x00step": a string key keeps the shuffle key
// encoding trivial and deterministic across runners.
func keyByLangStep(sk schemas.Sketch) (string, []float32) {
	return sk.Lang + "\x00" + strconv.FormatInt(sk.Step, 10), sk.Values
}

// Batch is one (language, step) mini-batch mean, the EMA's input.
type Batch struct {
	Step int64
	Mean []float32
	N    int64
}

func toBatch(key string, d Direction) (string, Batch, error) {
	lang, step, ok := strings.Cut(key, "\x00")
	t, err := strconv.ParseInt(step, 10, 64)
	if !ok || err != nil {
		return "", Batch{}, fmt.Errorf("aggregate: bad (lang, step) key %q", key)
	}
	return lang, Batch{Step: t, Mean: d.Values, N: d.Count}, nil
}

func toDirection(lang string, d Direction) Direction {
	d.Lang = lang
	return d
}

// meanFn is the exact mean of METHOD §4 as a CombineFn; accum.Mean's state
// is integer, so any bundle split gives the same bits.
type meanFn struct{ K int }

func (f *meanFn) CreateAccumulator() *accum.Mean { return accum.NewMean(f.K) }

func (f *meanFn) AddInput(m *accum.Mean, v []float32) (*accum.Mean, error) {
	if err := m.Add(v); err != nil {
		return nil, fmt.Errorf("aggregate.mean: add sketch: %w", err)
	}
	return m, nil
}

func (f *meanFn) MergeAccumulators(a, b *accum.Mean) (*accum.Mean, error) {
	if err := a.Merge(b); err != nil {
		return nil, fmt.Errorf("aggregate.mean: merge: %w", err)
	}
	return a, nil
}

func (f *meanFn) ExtractOutput(m *accum.Mean) (Direction, error) {
	v, err := m.Result()
	if err != nil {
		return Direction{}, fmt.Errorf("aggregate.mean: %w", err)
	}
	return Direction{Values: v, Count: m.N}, nil
}

// emaFn is the mergeable EMA of METHOD §4 over per-step batch means.
type emaFn struct {
	K     int
	Gamma float64
}

func (f *emaFn) CreateAccumulator() *accum.EMA { return accum.NewEMA(f.K, f.Gamma) }

func (f *emaFn) AddInput(e *accum.EMA, b Batch) (*accum.EMA, error) {
	if err := e.AddBatch(b.Step, b.Mean); err != nil {
		return nil, fmt.Errorf("aggregate.ema: step %d: %w", b.Step, err)
	}
	return e, nil
}

func (f *emaFn) MergeAccumulators(a, b *accum.EMA) (*accum.EMA, error) {
	if err := a.Merge(b); err != nil {
		return nil, fmt.Errorf("aggregate.ema: merge: %w", err)
	}
	return a, nil
}

func (f *emaFn) ExtractOutput(e *accum.EMA) (Direction, error) {
	v, err := e.Result()
	if err != nil {
		return Direction{}, fmt.Errorf("aggregate.ema: %w", err)
	}
	return Direction{Values: v, Count: e.N}, nil
}

// ConsensusOf runs PCGrad over the per-language directions and returns the
// consensus as a singleton, for use as a side input.
//
//	PCollection<Direction> -> PCollection<Consensus> (one element; none if no input)
func ConsensusOf(s beam.Scope, dirs beam.PCollection, opts Options) beam.PCollection {
	s = s.Scope("aggregate.Consensus")
	if err := opts.Validate(); err != nil {
		panic(err)
	}
	if t := dirs.Type().Type(); t != reflect.TypeOf(Direction{}) {
		panic(fmt.Sprintf("aggregate.Consensus: input must be PCollection<aggregate.Direction>, got %v", t))
	}
	return beam.Combine(s, &consensusFn{Seed: opts.Seed, K: opts.K}, dirs)
}

// DirSet is the consensus accumulator: the L directions seen so far.
type DirSet struct{ Dirs []Direction }

type consensusFn struct {
	Seed uint64
	K    int
}

func (f *consensusFn) CreateAccumulator() DirSet { return DirSet{} }

func (f *consensusFn) AddInput(a DirSet, d Direction) DirSet {
	a.Dirs = append(a.Dirs, d)
	return a
}

func (f *consensusFn) MergeAccumulators(a, b DirSet) DirSet {
	a.Dirs = append(a.Dirs, b.Dirs...)
	return a
}

func (f *consensusFn) ExtractOutput(a DirSet) (Consensus, error) {
	m := make(map[string][]float32, len(a.Dirs))
	counts := map[string]int64{}
	for _, d := range a.Dirs {
		if _, dup := m[d.Lang]; dup {
			return Consensus{}, fmt.Errorf("aggregate.Consensus: language %q aggregated twice", d.Lang)
		}
		if len(d.Values) != f.K {
			return Consensus{}, fmt.Errorf("aggregate.Consensus: language %q has %d values, want K=%d", d.Lang, len(d.Values), f.K)
		}
		m[d.Lang], counts[d.Lang] = d.Values, d.Count
	}
	r, err := pcgrad.Consensus(m, f.Seed)
	if err != nil {
		return Consensus{}, fmt.Errorf("aggregate.Consensus: pcgrad over %d languages: %w", len(m), err)
	}
	return fromResult(r, counts), nil
}

func fromResult(r pcgrad.Result, counts map[string]int64) Consensus {
	c := Consensus{Langs: r.Langs, G: r.Consensus, Norms: r.Norms, Projections: r.Projections, Zero: r.Zero}
	var ss float64
	for _, v := range r.Consensus {
		ss += float64(v) * float64(v)
	}
	c.Norm = math.Sqrt(ss)
	for _, l := range r.Langs {
		c.Counts = append(c.Counts, counts[l])
	}
	for _, row := range r.Cosine {
		c.Cosine = append(c.Cosine, row...)
	}
	for _, row := range r.Orders {
		c.Orders = append(c.Orders, row...)
	}
	if c.Zero == nil {
		c.Zero = []string{}
	}
	if c.Orders == nil {
		c.Orders = []int{}
	}
	return c
}

func init() {
	register.Function1x2(keyByLang)
	register.Function1x2(keyByLangStep)
	register.Function2x3(toBatch)
	register.Function2x1(toDirection)
	register.Combiner3[*accum.Mean, []float32, Direction](&meanFn{})
	register.Combiner3[*accum.EMA, Batch, Direction](&emaFn{})
	register.Combiner3[DirSet, Direction, Consensus](&consensusFn{})
	beam.RegisterType(reflect.TypeOf((*Direction)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*Consensus)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*Batch)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*DirSet)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*accum.Mean)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*accum.EMA)(nil)).Elem())
}
