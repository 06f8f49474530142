package aggregate

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/congrad-beam/congrad/congrad/accum"
	"github.com/congrad-beam/congrad/congrad/pcgrad"
	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/schemas"
)

func TestMain(m *testing.M) { ptest.MainWithDefault(m, "prism") }

// checkConsensus fails the pipeline unless the consensus equals Want (JSON
// of the expected Consensus) within Tol (0 = bit-identical).
type checkConsensus struct {
	Want string
	Tol  float64
}

func (c *checkConsensus) ProcessElement(got Consensus) error {
	var want Consensus
	if err := json.Unmarshal([]byte(c.Want), &want); err != nil {
		return err
	}
	if !reflect.DeepEqual(got.Langs, want.Langs) || !reflect.DeepEqual(got.Counts, want.Counts) ||
		!reflect.DeepEqual(got.Orders, want.Orders) || got.Projections != want.Projections {
		return fmt.Errorf("consensus metadata:\n got %v %v %v %d\nwant %v %v %v %d",
			got.Langs, got.Counts, got.Orders, got.Projections, want.Langs, want.Counts, want.Orders, want.Projections)
	}
	if len(got.G) != len(want.G) {
		return fmt.Errorf("len(g*) = %d, want %d", len(got.G), len(want.G))
	}
	for i := range got.G {
		if d := math.Abs(float64(got.G[i] - want.G[i])); d > c.Tol*(1+math.Abs(float64(want.G[i]))) {
			return fmt.Errorf("g*[%d] = %v, want %v (tol %v)", i, got.G[i], want.G[i], c.Tol)
		}
	}
	for i := range got.Cosine {
		if d := math.Abs(got.Cosine[i] - want.Cosine[i]); d > 1e-6 {
			return fmt.Errorf("cosine[%d] = %v, want %v", i, got.Cosine[i], want.Cosine[i])
		}
	}
	return nil
}

func init() { register.DoFn1x1[Consensus, error](&checkConsensus{}) }

// synth sketches d-dimensional gradients with congrad/sketch: each language
// has its own mean gradient direction plus noise, and two languages are set
// against each other so PCGrad has conflicts to resolve.
func synth(t *testing.T, spec sketch.Spec, langs []string, perLang, d int, steps int64) []schemas.Sketch {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 11))
	base := map[string][]float32{}
	for li, l := range langs {
		b := make([]float32, d)
		for j := range b {
			b[j] = float32(rng.NormFloat64())
		}
		if li == 1 { // language 1 points against language 0
			for j := range b {
				b[j] = -base[langs[0]][j] + 0.3*b[j]
			}
		}
		base[l] = b
	}
	sk, err := sketch.New(spec)
	if err != nil {
		t.Fatal(err)
	}
	var out []schemas.Sketch
	for _, l := range langs {
		for i := 0; i < perLang; i++ {
			g := make([]float32, d)
			for j := range g {
				g[j] = base[l][j] + float32(0.5*rng.NormFloat64())
			}
			sk.Reset()
			if err := sk.Add("lora.q.B", 0, g[:d/2]); err != nil {
				t.Fatal(err)
			}
			if err := sk.Add("lora.v.B", 0, g[d/2:]); err != nil {
				t.Fatal(err)
			}
			v := sk.Sketch()
			out = append(out, schemas.Sketch{PairID: fmt.Sprintf("%s-%03d", l, i), Lang: l,
				Step: int64(i) % steps, Values: v})
		}
	}
	return out
}

func reference(t *testing.T, sks []schemas.Sketch, o Options) Consensus {
	t.Helper()
	dirs := map[string][]float32{}
	counts := map[string]int64{}
	if o.Method == EMA {
		type key struct {
			l string
			s int64
		}
		means := map[key]*accum.Mean{}
		for _, s := range sks {
			k := key{s.Lang, s.Step}
			if means[k] == nil {
				means[k] = accum.NewMean(o.K)
			}
			if err := means[k].Add(s.Values); err != nil {
				t.Fatal(err)
			}
		}
		emas := map[string]*accum.EMA{}
		for k, m := range means {
			if emas[k.l] == nil {
				emas[k.l] = accum.NewEMA(o.K, o.Gamma)
			}
			v, _ := m.Result()
			if err := emas[k.l].AddBatch(k.s, v); err != nil {
				t.Fatal(err)
			}
		}
		for l, e := range emas {
			dirs[l], _ = e.Result()
			counts[l] = e.N
		}
	} else {
		ms := map[string]*accum.Mean{}
		for _, s := range sks {
			if ms[s.Lang] == nil {
				ms[s.Lang] = accum.NewMean(o.K)
			}
			if err := ms[s.Lang].Add(s.Values); err != nil {
				t.Fatal(err)
			}
		}
		for l, m := range ms {
			dirs[l], _ = m.Result()
			counts[l] = m.N
		}
	}
	r, err := pcgrad.Consensus(dirs, o.Seed)
	if err != nil {
		t.Fatal(err)
	}
	return fromResult(r, counts)
}

func TestPerLanguageConsensus(t *testing.T) {
	spec := sketch.DefaultSpec()
	spec.K = 64
	langs := []string{"ar", "de", "en", "ja", "th"}
	sks := synth(t, spec, langs, 40, 256, 4)
	for _, o := range []Options{{K: spec.K, Seed: 3}, {K: spec.K, Seed: 3, Method: EMA, Gamma: 0.8}} {
		t.Run(o.Method+"", func(t *testing.T) {
			if err := o.Validate(); err != nil {
				t.Fatal(err)
			}
			want := reference(t, sks, o)
			if want.Projections == 0 {
				t.Fatal("fixture has no conflicts; the test would not exercise PCGrad")
			}
			wantJSON, _ := json.Marshal(want)
			tol := 0.0 // the exact mean gives identical bits however Beam splits bundles
			if o.Method == EMA {
				tol = 1e-5 // EMA merges agree to rounding only (accum docs)
			}
			p, s := beam.NewPipelineWithRoot()
			in := beam.CreateList(s, sks)
			dirs := PerLanguage(s, in, o)
			passert.Count(s, dirs, "directions", len(langs))
			cons := ConsensusOf(s, dirs, o)
			passert.Count(s, cons, "consensus", 1)
			beam.ParDo0(s, &checkConsensus{Want: string(wantJSON), Tol: tol}, cons)
			if err := ptest.Run(p); err != nil {
				t.Fatalf("pipeline: %v", err)
			}
		})
	}
}

// A sketch of the wrong dimension must fail the job with context, never be
// dropped silently (the filter's Check keeps such sketches out upstream).
func TestPerLanguageRejectsBadSketch(t *testing.T) {
	p, s := beam.NewPipelineWithRoot()
	in := beam.Create(s, schemas.Sketch{PairID: "x", Lang: "en", Values: []float32{1, 2}})
	ConsensusOf(s, PerLanguage(s, in, Options{K: 3}), Options{K: 3})
	err := ptest.Run(p)
	if err == nil {
		t.Fatal("want an error for a 2-value sketch with K=3")
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{{K: 0}, {K: 4, Method: "median"}, {K: 4, Method: EMA, Gamma: 1.5}} {
		if err := o.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want error", o)
		}
	}
	o := Options{K: 4}
	if err := o.Validate(); err != nil || o.Method != Mean || o.Gamma != 0.9 {
		t.Fatalf("defaults: %+v, %v", o, err)
	}
}

func TestEmptyInputGivesNoConsensus(t *testing.T) {
	p, s := beam.NewPipelineWithRoot()
	in := beam.CreateList(s, []schemas.Sketch{})
	cons := ConsensusOf(s, PerLanguage(s, in, Options{K: 3}), Options{K: 3})
	passert.Empty(s, cons)
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}
}
