package train

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/congrad-beam/congrad/gpu/model"
)

// smallModel is a 1-layer Llama-style gpu/model config with the byte
// tokenizer: small enough for finite differences in seconds.
func smallModel(t testing.TB) *model.Model {
	t.Helper()
	cfg, err := model.NewConfig(model.Config{ModelType: "llama", VocabSize: 259, HiddenSize: 16, IntermediateSize: 32,
		NumHiddenLayers: 1, NumAttentionHeads: 2, NumKeyValueHeads: 1, MaxPositionEmbeddings: 32,
		BOSTokenID: model.IDList{model.ByteBOS}, EOSTokenID: model.IDList{model.ByteEOS}, PadTokenID: model.IDList{model.BytePAD}})
	if err != nil {
		t.Fatal(err)
	}
	return &model.Model{Ref: "test", Config: cfg, Tok: model.ByteTokenizer{}, Weights: model.InitWeights(cfg, 7)}
}

func testPairs(n int, seed uint64) []Pair {
	rng := rand.New(rand.NewPCG(seed, 1))
	word := func(k int) string {
		b := make([]byte, k)
		for i := range b {
			b[i] = byte('a' + rng.IntN(6))
		}
		return string(b)
	}
	out := make([]Pair, n)
	for i := range out {
		out[i] = Pair{ID: string(rune('A' + i)), Lang: "xx", Prompt: word(3), Chosen: "aa" + word(2), Rejected: "ff" + word(3)}
	}
	return out
}

func newTestEngine(t testing.TB) *Engine {
	t.Helper()
	e, err := NewEngine(smallModel(t), EngineOptions{Beta: 0.5, Alpha: 0.05, LoRA: model.LoRAOptions{Rank: 2, Alpha: 4}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// perturbedLoRA has non-zero B, so A gets a gradient and π_θ ≠ π_ref.
func perturbedLoRA(t *testing.T, e *Engine) *LoRA {
	lo, err := e.NewLoRA(3)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(9, 9))
	for _, p := range lo.Params {
		for j := range p.Value {
			p.Value[j] += float32(rng.NormFloat64() * 0.3)
		}
	}
	return lo
}

// meanLoss evaluates the mean LP-DPO loss of pairs idx at lo on the host
// path (sequence log-probs from the forward graph, loss in float64): an
// independent route to the quantity the step graph differentiates.
func meanLoss(t *testing.T, e *Engine, ds *Dataset, lo *LoRA, idx []int) float64 {
	sub := ds.Subset(idx)
	rw, rl, err := e.Rewards(sub, lo)
	if err != nil {
		t.Fatal(err)
	}
	s := 0.0
	for i := range rw {
		c, r := sub.enc[i].ResponseTokens()
		z := rw[i] - rl[i] - e.Opts.Alpha*float64(c-r)
		s += math.Log1p(math.Exp(-z))
	}
	return s / float64(len(rw))
}

// probe compares an analytic gradient (flattened in parameter order) with
// central differences of f at three coordinates of every tensor. float32
// graphs: h = 1e-2 keeps rounding (~1e-7/h) far below the tolerance.
func probe(t *testing.T, what string, lo *LoRA, grad func(pi, j int) float64, f func(*LoRA) float64) {
	t.Helper()
	const h = 1e-2
	for pi, p := range lo.Params {
		for _, j := range []int{0, len(p.Value) / 2, len(p.Value) - 1} {
			plus, minus := lo.Clone(), lo.Clone()
			plus.Params[pi].Value[j] += h
			minus.Params[pi].Value[j] -= h
			fd := (f(plus) - f(minus)) / (2 * h)
			if got := grad(pi, j); math.Abs(fd-got) > 2e-3+0.03*math.Abs(fd) {
				t.Errorf("%s %s[%d]: autodiff %.6f, finite difference %.6f", what, p.Name, j, got, fd)
			}
		}
	}
}

func TestStepGradientMatchesFiniteDifferences(t *testing.T) {
	e := newTestEngine(t)
	ds, err := e.NewDataset(testPairs(3, 1))
	if err != nil {
		t.Fatal(err)
	}
	lo := perturbedLoRA(t, e)
	idx := []int{0, 1, 2}
	loss, grads, err := e.lossGrad(ds, idx, lo)
	if err != nil {
		t.Fatal(err)
	}
	if host := meanLoss(t, e, ds, lo, idx); math.Abs(host-loss) > 1e-5 {
		t.Errorf("step loss %v, host loss %v", loss, host)
	}
	probe(t, "step", lo, func(pi, j int) float64 { return float64(grads[pi][j]) },
		func(l *LoRA) float64 { return meanLoss(t, e, ds, l, idx) })
}

// The per-pair gradients come from gpu/dpo (what the pipeline filters with);
// they must match finite differences of this package's loss, and their mean
// must equal the training step's gradient from the other graph.
func TestPerPairGradientsMatchFiniteDifferencesAndStep(t *testing.T) {
	e := newTestEngine(t)
	ds, err := e.NewDataset(testPairs(3, 1))
	if err != nil {
		t.Fatal(err)
	}
	lo := perturbedLoRA(t, e)
	pg, err := e.PerPairGradients(context.Background(), ds, lo, 2) // chunk 2: batched and B=1 chunks
	if err != nil {
		t.Fatal(err)
	}
	if len(pg.Grads) != 3 || len(pg.Grads[0]) != lo.NumParams() || strings.Join(pg.Names, ",") != strings.Join(lo.Names(), ",") {
		t.Fatalf("per-pair gradients: %d pairs, dim %d, names %v", len(pg.Grads), len(pg.Grads[0]), pg.Names)
	}
	offs := make([]int, len(lo.Params))
	for i := 1; i < len(offs); i++ {
		offs[i] = offs[i-1] + pg.Sizes[i-1]
	}
	for i := 0; i < ds.Len(); i++ {
		probe(t, "pair "+ds.Pairs[i].ID, lo, func(pi, j int) float64 { return float64(pg.Grads[i][offs[pi]+j]) },
			func(l *LoRA) float64 { return meanLoss(t, e, ds, l, []int{i}) })
	}
	_, step, err := e.lossGrad(ds, []int{0, 1, 2}, lo)
	if err != nil {
		t.Fatal(err)
	}
	for pi := range lo.Params {
		for j, g := range step[pi] {
			mean := 0.0
			for i := range pg.Grads {
				mean += float64(pg.Grads[i][offs[pi]+j]) / 3
			}
			if math.Abs(mean-float64(g)) > 1e-5+1e-4*math.Abs(mean) {
				t.Fatalf("%s[%d]: step gradient %v, mean of per-pair gradients %v", lo.Params[pi].Name, j, g, mean)
			}
		}
	}
}

func TestPerPairIndependentOfOtherPairs(t *testing.T) {
	e := newTestEngine(t)
	pairs := testPairs(4, 2)
	ds, err := e.NewDataset(pairs)
	if err != nil {
		t.Fatal(err)
	}
	a, err := e.PerPairGradients(context.Background(), ds, nil, 4)
	if err != nil {
		t.Fatal(err)
	}
	pairs[3].Chosen = "ffffff"
	ds2, err := e.NewDataset(pairs)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.PerPairGradients(context.Background(), ds2, nil, 4)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		for j := range a.Grads[i] {
			if d := math.Abs(float64(a.Grads[i][j] - b.Grads[i][j])); d > 1e-6 {
				t.Fatalf("pair %d changed when pair 3 changed: |Δ|=%g at %d", i, d, j)
			}
		}
	}
	same := true
	for j := range a.Grads[3] {
		same = same && a.Grads[3][j] == b.Grads[3][j]
	}
	if same {
		t.Error("pair 3's gradient did not change with its data")
	}
	// Fresh LoRA (B = 0): only the B factors may have a gradient.
	off := 0
	nz := 0
	lo, err := e.NewLoRA(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range lo.Params {
		for j := range p.Value {
			if v := a.Grads[0][off+j]; v != 0 {
				if p.IsA {
					t.Fatalf("%s has gradient %v at fresh LoRA", p.Name, v)
				}
				nz++
			}
		}
		off += len(p.Value)
	}
	if nz == 0 {
		t.Error("fresh LoRA: no B gradient")
	}
}

func TestTrainLowersLossAndIsDeterministic(t *testing.T) {
	e := newTestEngine(t)
	ds, err := e.NewDataset(testPairs(16, 3))
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{LR: 1e-2, BatchSize: 8, Steps: 30, Seed: 5}
	r1, err := e.Train(context.Background(), ds, opts)
	if err != nil {
		t.Fatal(err)
	}
	if first, last := r1.Losses[0], r1.Losses[len(r1.Losses)-1]; !(last < first*0.8) {
		t.Errorf("loss did not fall: first %.4f last %.4f", first, last)
	}
	r2, err := e.Train(context.Background(), ds, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range r1.Losses {
		if r1.Losses[i] != r2.Losses[i] {
			t.Fatalf("step %d: loss %v vs %v: seeded runs differ", i, r1.Losses[i], r2.Losses[i])
		}
	}
	cw, cl, err := e.Rewards(ds, r1.LoRA)
	if err != nil {
		t.Fatal(err)
	}
	acc := 0
	for i := range cw {
		if cw[i] > cl[i] {
			acc++
		}
	}
	if acc < ds.Len()*3/4 {
		t.Errorf("training accuracy %d/%d", acc, ds.Len())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Train(ctx, ds, opts); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: want context.Canceled, got %v", err)
	}
}

func TestBadInput(t *testing.T) {
	e := newTestEngine(t)
	ds, err := e.NewDataset([]Pair{
		{ID: "long", Prompt: strings.Repeat("a", 40), Chosen: "a", Rejected: "b"},
		{ID: "empty", Prompt: "a", Chosen: "", Rejected: "b"},
		{ID: "ok", Prompt: "a", Chosen: "a", Rejected: "b"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if ds.Len() != 1 || len(ds.Rejected) != 2 || !strings.Contains(ds.Rejected[0].Reason, "too long") {
		t.Fatalf("want 1 usable and 2 rejected pairs (with reasons), got %d and %v", ds.Len(), ds.Rejected)
	}
	if _, err := e.Train(context.Background(), ds.Subset(nil), Options{}); !errors.Is(err, ErrConfig) {
		t.Errorf("empty dataset: want ErrConfig, got %v", err)
	}
	if _, err := e.Train(context.Background(), ds, Options{LR: -1}); !errors.Is(err, ErrConfig) {
		t.Errorf("negative LR: want ErrConfig, got %v", err)
	}
	m := smallModel(t)
	for name, o := range map[string]EngineOptions{
		"negative beta": {Beta: -1}, "NaN alpha": {Alpha: math.NaN()}, "max len over the model's": {MaxLen: 64},
		"bad target": {LoRA: model.LoRAOptions{Targets: []string{"nope"}}}, "negative rank": {LoRA: model.LoRAOptions{Rank: -1}},
	} {
		if _, err := NewEngine(m, o); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: want ErrConfig, got %v", name, err)
		}
	}
	if _, err := NewEngine(nil, EngineOptions{}); !errors.Is(err, ErrConfig) {
		t.Errorf("nil model: want ErrConfig, got %v", err)
	}
	broken := smallModel(t)
	delete(broken.Weights, "model.norm.weight")
	if _, err := NewEngine(broken, EngineOptions{}); err == nil || !strings.Contains(err.Error(), "model.norm.weight") {
		t.Errorf("missing weight: want an error naming it, got %v", err)
	}
}
