package aggregate

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/congrad-beam/congrad/congrad/accum"
)

// Key is the accumulator key PerLanguage gives a sketch: its language for
// the mean, "lang\x00step" for the EMA (whose input is per-step means).
func Key(method, lang string, step int64) string {
	if method == EMA {
		return lang + "\x00" + strconv.FormatInt(step, 10)
	}
	return lang
}

// Partials pre-aggregates the sketches one worker sees in one element (a
// file split, say) into one exact accumulator per key: combiner lifting by
// hand, for readers that never emit the sketches themselves. Memory: one
// accumulator of K·88 bytes per key seen (accum.Staged).
type Partials struct {
	opts Options
	m    map[string]*accum.Staged
}

// NewPartials returns empty partials; opts must be valid.
func NewPartials(opts Options) *Partials {
	return &Partials{opts: opts, m: map[string]*accum.Staged{}}
}

// Add adds one sketch's values (K finite values; anything else is an error).
func (p *Partials) Add(lang string, step int64, v []float32) error {
	if err := p.of(lang, step).Add(v); err != nil {
		return fmt.Errorf("aggregate: add sketch of %q: %w", lang, err)
	}
	return nil
}

// AddFinite is Add for a vector already checked to be finite (see
// accum.Mean.AddFinite).
func (p *Partials) AddFinite(lang string, step int64, v []float32) error {
	if err := p.of(lang, step).AddFinite(v); err != nil {
		return fmt.Errorf("aggregate: add sketch of %q: %w", lang, err)
	}
	return nil
}

func (p *Partials) of(lang string, step int64) *accum.Staged {
	key := Key(p.opts.Method, lang, step)
	m, ok := p.m[key]
	if !ok {
		m = accum.NewStaged(p.opts.K)
		p.m[key] = m
	}
	return m
}

// Flush emits every accumulator in key order and empties p.
func (p *Partials) Flush(emit func(string, accum.Mean)) {
	keys := make([]string, 0, len(p.m))
	for k := range p.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		emit(k, *p.m[k].Mean())
	}
	clear(p.m)
}

// FromPartials merges partial accumulators (keyed by Key) into one
// direction per language, exactly as PerLanguage would from the sketches:
// the mean's state is integer, so the bits do not depend on the grouping.
//
//	PCollection<KV<string, accum.Mean>> -> PCollection<Direction>
func FromPartials(s beam.Scope, partials beam.PCollection, opts Options) beam.PCollection {
	s = s.Scope("aggregate.FromPartials")
	if err := opts.Validate(); err != nil {
		panic(err)
	}
	means := beam.CombinePerKey(s, &mergeFn{K: opts.K}, partials)
	if opts.Method == EMA {
		batches := beam.ParDo(s, toBatch, means)
		dirs := beam.CombinePerKey(s, &emaFn{K: opts.K, Gamma: opts.Gamma}, batches)
		return beam.ParDo(s, toDirection, dirs)
	}
	return beam.ParDo(s, toDirection, means)
}

// mergeFn merges partial means.
type mergeFn struct{ K int }

func (f *mergeFn) CreateAccumulator() *accum.Mean { return accum.NewMean(f.K) }

func (f *mergeFn) AddInput(m *accum.Mean, v accum.Mean) (*accum.Mean, error) {
	if err := m.Merge(&v); err != nil {
		return nil, fmt.Errorf("aggregate.mean: add partial: %w", err)
	}
	return m, nil
}

func (f *mergeFn) MergeAccumulators(a, b *accum.Mean) (*accum.Mean, error) {
	if err := a.Merge(b); err != nil {
		return nil, fmt.Errorf("aggregate.mean: merge: %w", err)
	}
	return a, nil
}

func (f *mergeFn) ExtractOutput(m *accum.Mean) (Direction, error) {
	return (&meanFn{K: f.K}).ExtractOutput(m)
}

func init() {
	register.Combiner3[*accum.Mean, accum.Mean, Direction](&mergeFn{})
	beam.RegisterType(reflect.TypeOf(accum.Mean{}))
}
