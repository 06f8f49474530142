package dpo

import (
	"math"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/gpu/model"
)

var pairs = []Input{
	{PairID: "en", Prompt: "Name a colour.", Chosen: "Blue.", Rejected: "Dog"},
	{PairID: "de", Prompt: "Nenne eine Farbe.", Chosen: "Grün, wie Gras.", Rejected: "?"},
	{PairID: "ru", Prompt: "Назови цвет.", Chosen: "Красный.", Rejected: "Не знаю, правда"},
}

var tiny = model.NewTiny(11)

func newX(t *testing.T, o Options) *Extractor {
	t.Helper()
	if o.Sketch.K == 0 {
		o.Sketch = sketch.Spec{Method: sketch.CountSketch, K: 64, Seed: 3, Version: sketch.Version}
	}
	if o.LoRA.Rank == 0 {
		o.LoRA = model.LoRAOptions{Rank: 2, Seed: 5}
	}
	if o.MaxLen == 0 {
		o.MaxLen = 64
	}
	x, err := NewExtractor(tiny, o)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func relErr(a, b []float64) float64 {
	num, den := 0.0, 0.0
	for i := range a {
		num += (a[i] - b[i]) * (a[i] - b[i])
		den += b[i] * b[i]
	}
	return math.Sqrt(num / math.Max(den, 1e-300))
}

// Central differences in float64: with eps=1e-5 the truncation error is
// O(eps^2 |f”'|) ~ 1e-10 and the rounding error ~1e-16/eps ~ 1e-11, so a
// 1e-6 relative tolerance can only fail on a wrong gradient.
func TestPerPairGradientsMatchFiniteDifferences(t *testing.T) {
	x := newX(t, Options{Batch: 2, Alpha: 0.05, Beta: 0.5, DType: dtypes.Float64,
		LoRA: model.LoRAOptions{Rank: 2, Seed: 5, InitBStd: 0.3}})
	in := pairs[:2]
	grads, err := x.exactGradients64(in)
	if err != nil {
		t.Fatal(err)
	}
	loss := func(pair int) float64 {
		out, err := x.Extract(in)
		if err != nil || out[pair].Err != "" {
			t.Fatal(err, out[pair].Err)
		}
		return out[pair].Loss
	}
	// Probe coordinates in A and B tensors of both layers.
	const eps = 1e-5
	checked := 0
	for pi, p := range x.params {
		if pi%3 != 0 && pi != len(x.params)-1 {
			continue
		}
		off := 0
		for _, q := range x.params[:pi] {
			off += len(q.Value)
		}
		for _, j := range []int{0, len(p.Value) / 2} {
			for pair := range in {
				orig := float64(p.Value[j])
				set := func(v float64) {
					vals := toF64(p.Value)
					vals[j] = v
					x.lora[pi] = floatTensor(dtypes.Float64, vals, p.Dims...)
				}
				set(orig + eps)
				up := loss(pair)
				set(orig - eps)
				down := loss(pair)
				set(orig)
				fd := (up - down) / (2 * eps)
				got := grads[pair][off+j]
				if math.Abs(fd-got) > 1e-6*math.Max(1e-3, math.Abs(fd)) {
					t.Errorf("%s[%d] pair %d: gradient %.10g, finite difference %.10g", p.Name, j, pair, got, fd)
				}
				checked++
			}
		}
	}
	if checked < 8 {
		t.Fatalf("only %d coordinates checked", checked)
	}
}

func TestBatchedEqualsSingleAndIsolated(t *testing.T) {
	o := Options{LoRA: model.LoRAOptions{Rank: 2, Seed: 5, InitBStd: 0.2}, Alpha: 0.01}
	o.Batch = 3
	xb := newX(t, o)
	o.Batch = 1
	x1 := newX(t, o)
	gb, _, err := xb.ExactGradients(pairs)
	if err != nil {
		t.Fatal(err)
	}
	g1, _, err := x1.ExactGradients(pairs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range pairs {
		if e := relErr(f64(gb[i]), f64(g1[i])); e > 1e-5 {
			t.Errorf("pair %d: batched vs B=1 relative error %g", i, e)
		}
	}
	norms, err := xb.GradNorms(pairs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range pairs {
		n := 0.0
		for _, v := range gb[i] {
			n += float64(v) * float64(v)
		}
		if math.Abs(norms[i]-math.Sqrt(n)) > 1e-5*math.Sqrt(n) {
			t.Errorf("pair %d: GradNorms %v, |g| %v", i, norms[i], math.Sqrt(n))
		}
	}
	// Changing pair 2's data must not move pair 0's or 1's gradient.
	changed := append([]Input{}, pairs...)
	changed[2].Chosen = "Синий и ещё немного."
	gc, _, err := xb.ExactGradients(changed)
	if err != nil {
		t.Fatal(err)
	}
	if relErr(f64(gc[2]), f64(gb[2])) < 1e-3 {
		t.Fatal("pair 2's gradient did not change with its data")
	}
	for i := 0; i < 2; i++ {
		if e := relErr(f64(gc[i]), f64(gb[i])); e > 1e-6 {
			t.Errorf("pair %d's gradient moved by %g when pair 2 changed", i, e)
		}
	}
}

func TestFreshLoRAOnlyBHasGradientAndSkipsRefForward(t *testing.T) {
	x := newX(t, Options{Batch: 3})
	if !x.refSame {
		t.Fatal("B=0 LoRA should reuse the policy forward as the reference")
	}
	if o := x.Options(); o.Beta != 0.1 || o.LoRA.Alpha != 4 || o.Sketch.K != 64 || len(o.LoRA.Targets) != 2 {
		t.Fatalf("resolved options %+v", o)
	}
	xr := newX(t, Options{Batch: 3, forceRefForward: true})
	g, names, err := x.ExactGradients(pairs)
	if err != nil {
		t.Fatal(err)
	}
	gr, _, _ := xr.ExactGradients(pairs)
	for i := range pairs {
		if e := relErr(f64(g[i]), f64(gr[i])); e > 1e-6 {
			t.Errorf("pair %d: shortcut vs explicit reference differ by %g", i, e)
		}
		off, nonzeroB := 0, false
		for k, p := range x.params {
			for j := range p.Value {
				v := g[i][off+j]
				if p.IsA && v != 0 {
					t.Fatalf("%s has gradient %v with B=0", names[k], v)
				}
				if !p.IsA && v != 0 {
					nonzeroB = true
				}
			}
			off += len(p.Value)
		}
		if !nonzeroB {
			t.Errorf("pair %d: no B gradient", i)
		}
	}
	out, _ := x.Extract(pairs)
	for _, o := range out {
		// At θ0 the policy is the reference: z is only the length margin and ℓ = log 2.
		if math.Abs(o.Z) > 1e-9 || math.Abs(o.Loss-math.Ln2) > 1e-6 || o.RefChosenLogp >= 0 {
			t.Errorf("%s: z=%v loss=%v ref=%v", o.PairID, o.Z, o.Loss, o.RefChosenLogp)
		}
	}
}

func TestDeviceSketchEqualsHostSketch(t *testing.T) {
	for _, method := range []sketch.Method{sketch.CountSketch, sketch.Gaussian} {
		t.Run(string(method), func(t *testing.T) {
			spec := sketch.Spec{Method: method, K: 32, Seed: 99, Version: sketch.Version}
			x := newX(t, Options{Batch: 2, Sketch: spec, LoRA: model.LoRAOptions{Rank: 2, Seed: 5, InitBStd: 0.2}})
			out, err := x.Extract(pairs)
			if err != nil {
				t.Fatal(err)
			}
			g, names, err := x.ExactGradients(pairs)
			if err != nil {
				t.Fatal(err)
			}
			for i := range pairs {
				h, err := sketch.New(spec)
				if err != nil {
					t.Fatal(err)
				}
				off := 0
				for pi, p := range x.params {
					if err := h.Add(names[pi], 0, g[i][off:off+len(p.Value)]); err != nil {
						t.Fatal(err)
					}
					off += len(p.Value)
				}
				// Float32 sums in a different order: agreement to ~1e-6 relative.
				if e := relErr(f64(out[i].Sketch), f64(h.Sketch())); e > 1e-5 || len(out[i].Sketch) != 32 {
					t.Errorf("pair %d: device vs host sketch relative error %g", i, e)
				}
			}
			again, _ := x.Extract(pairs)
			for i := range out {
				for c := range out[i].Sketch {
					if math.Float32bits(out[i].Sketch[c]) != math.Float32bits(again[i].Sketch[c]) {
						t.Fatal("sketch not bit-identical across runs")
					}
				}
			}
		})
	}
}

func TestConcurrentExtractIsDeterministic(t *testing.T) {
	x := newX(t, Options{Batch: 2, LoRA: model.LoRAOptions{Rank: 2, Seed: 5, InitBStd: 0.2}})
	res := make([][]Output, 2)
	errs := make(chan error, 2)
	for i := range res {
		go func() {
			var err error
			res[i], err = x.Extract(pairs)
			errs <- err
		}()
	}
	for range res {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for p := range pairs {
		for c, v := range res[0][p].Sketch {
			if math.Float32bits(v) != math.Float32bits(res[1][p].Sketch[c]) || res[0][p].Loss != res[1][p].Loss {
				t.Fatalf("pair %d differs between concurrent calls", p)
			}
		}
	}
}

func TestBadInputGivesPerPairReasons(t *testing.T) {
	long := strings.Repeat("lang ", 40)
	in := []Input{
		{PairID: "ok", Prompt: "Hi", Chosen: "Hello!", Rejected: "Go away"},
		{PairID: "empty", Prompt: "Hi", Chosen: "", Rejected: "x"},
		{PairID: "longprompt", Prompt: long, Chosen: "Yes", Rejected: "No"},
		{PairID: "longresp", Prompt: "Hi", Chosen: long, Rejected: "No"},
	}
	x := newX(t, Options{Batch: 3})
	out, err := x.Extract(in)
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Err != "" || out[2].Err != "" || out[2].Truncated == 0 || out[2].ChosenTokens != 3 {
		t.Errorf("ok/longprompt: %+v %+v", out[0], out[2])
	}
	if !strings.Contains(out[1].Err, "empty chosen") || !strings.Contains(out[3].Err, "too long") {
		t.Errorf("reasons: %q %q", out[1].Err, out[3].Err)
	}
	if x.Stats().Rejected.Load() != 2 || x.Stats().Truncated.Load() != 2 {
		t.Errorf("stats: rejected %d truncated %d", x.Stats().Rejected.Load(), x.Stats().Truncated.Load())
	}
	xr := newX(t, Options{Batch: 3, Truncate: TruncateResponses})
	out, _ = xr.Extract(in[3:])
	if out[0].Err != "" || out[0].ChosenTokens >= len(long) || len(out[0].Sketch) != 64 || out[0].RejectedTokens != 2 {
		t.Errorf("truncated responses: %+v", out[0])
	}
	// NaN in the input embedding of 'Z' poisons only the pairs containing 'Z'.
	// The model is untied for this: a NaN row of a tied lm_head would put a
	// NaN logit into every position of every pair.
	bad := model.NewTiny(11)
	untied := *bad.Config
	f := false
	untied.TieWordEmbeddings = &f
	bad.Config = &untied
	emb := bad.Weights["model.embed_tokens.weight"]
	bad.Weights["lm_head.weight"] = &model.Tensor{Dims: emb.Dims, Data: append([]float32{}, emb.Data...)}
	for j := 0; j < 64; j++ {
		emb.Data['Z'*64+j] = float32(math.NaN())
	}
	xn, err := NewExtractor(bad, Options{Batch: 2, MaxLen: 64, LoRA: model.LoRAOptions{Rank: 2},
		Sketch: sketch.Spec{Method: sketch.CountSketch, K: 8, Version: sketch.Version}})
	if err != nil {
		t.Fatal(err)
	}
	out, err = xn.Extract([]Input{{PairID: "nan", Prompt: "Zed", Chosen: "a", Rejected: "b"}, in[0]})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out[0].Err, "non-finite") || out[1].Err != "" {
		t.Errorf("NaN isolation: %q / %q", out[0].Err, out[1].Err)
	}
}

func TestEncodeRejectsOutOfVocabulary(t *testing.T) {
	e := encode(oovTok{}, 259, Input{Prompt: "a", Chosen: "b", Rejected: "c"}, 64, TruncatePrompt)
	if !strings.Contains(e.err, "outside vocabulary") {
		t.Fatalf("err = %q", e.err)
	}
	if _, err := NewExtractor(tiny, Options{Sketch: sketch.Spec{Method: "bogus", K: 4, Version: sketch.Version}}); err == nil {
		t.Fatal("bogus sketch method accepted")
	}
}

type oovTok struct{ model.ByteTokenizer }

type noBOSTok struct{ model.ByteTokenizer }

func (noBOSTok) BOS() int { return -1 }

func TestEncodeEmptyPromptWithoutBOS(t *testing.T) {
	if e := encode(noBOSTok{}, 259, Input{Prompt: "", Chosen: "b", Rejected: "c"}, 64, TruncatePrompt); !strings.Contains(e.err, "empty prompt") {
		t.Fatalf("err = %q", e.err)
	}
	if e := encode(noBOSTok{}, 259, Input{Prompt: "a", Chosen: "b", Rejected: "c"}, 64, TruncatePrompt); e.err != "" || len(e.prompt) != 1 {
		t.Fatalf("%+v", e)
	}
}

func (oovTok) Encode(string) []int { return []int{999} }

func f64(v []float32) []float64 { return toF64(v) }

func TestEdgeCases(t *testing.T) {
	x := newX(t, Options{Batch: 2})
	if out, err := x.Extract(nil); err != nil || len(out) != 0 {
		t.Fatalf("empty input: %v %v", out, err)
	}
	out, err := x.Extract([]Input{{PairID: "a", Prompt: "p"}, {PairID: "b", Prompt: "p", Chosen: "c"}})
	if err != nil || out[0].Err == "" || out[1].Err == "" || out[0].PairID != "a" {
		t.Fatalf("all-invalid batch: %+v %v", out, err)
	}
	if _, _, err := x.ExactGradients([]Input{pairs[0], {PairID: "bad", Prompt: "p"}}); err == nil || !strings.Contains(err.Error(), `"bad"`) {
		t.Fatalf("ExactGradients with a bad pair: %v", err)
	}
	if _, err := NewExtractor(nil, Options{}); err == nil {
		t.Fatal("nil model accepted")
	}
	for _, o := range []Options{{Beta: -1}, {Batch: -2}, {MaxLen: 100000}, {Truncate: 7}} {
		if _, err := NewExtractor(tiny, o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
}

// Adapters given explicitly must act exactly like the same values drawn from
// the seed, and wrong shapes must be refused.
func TestAdaptersOption(t *testing.T) {
	o := Options{LoRA: model.LoRAOptions{Rank: 2, Seed: 5, InitBStd: 0.2}, Batch: 2, MaxLen: 64,
		Sketch: sketch.Spec{Method: sketch.CountSketch, K: 64, Seed: 3, Version: sketch.Version}}
	seeded := newX(t, o)
	ps, err := model.LoRAParams(tiny.Config, o.LoRA)
	if err != nil {
		t.Fatal(err)
	}
	o.LoRA.InitBStd = 0 // the explicit values, not the seed, must decide
	for _, p := range ps {
		o.Adapters = append(o.Adapters, p.Value)
	}
	given := newX(t, o)
	ga, _, err := seeded.ExactGradients(pairs)
	if err != nil {
		t.Fatal(err)
	}
	gb, _, err := given.ExactGradients(pairs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range pairs {
		if e := relErr(f64(gb[i]), f64(ga[i])); e != 0 {
			t.Errorf("pair %d: explicit adapters differ from seeded ones by %g", i, e)
		}
	}
	o.Adapters = o.Adapters[1:]
	if _, err := NewExtractor(tiny, o); err == nil || !strings.Contains(err.Error(), "adapter") {
		t.Errorf("too few adapter tensors: want an error, got %v", err)
	}
	o.Adapters = [][]float32{{1}}
	for range ps[1:] {
		o.Adapters = append(o.Adapters, nil)
	}
	if _, err := NewExtractor(tiny, o); err == nil || !strings.Contains(err.Error(), "lora_A") {
		t.Errorf("wrong adapter size: want an error naming the tensor, got %v", err)
	}
}
