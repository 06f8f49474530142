package train

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func smallCfg() Config {
	return Config{Dim: 8, Layers: 1, Heads: 2, FF: 16, MaxLen: 16, LoRARank: 2, LoRAAlpha: 4}
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

func newTestEngine(t *testing.T) *Engine {
	t.Helper()
	base, err := NewBase(smallCfg(), 7)
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(base, 0.5, 0.05)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// lossAt evaluates the LP-DPO loss of pair i at adapters lo on the host path
// (sequence log-probs from the graph, loss in float64).
func lossAt(t *testing.T, e *Engine, ds *Dataset, lo *LoRA, i int) float64 {
	sub := ds.Subset([]int{i})
	rw, rl, err := e.Rewards(sub, lo)
	if err != nil {
		t.Fatal(err)
	}
	z := rw[0] - rl[0] - e.alpha*float64(sub.chosen[0].respN-sub.rejected[0].respN)
	return math.Log1p(math.Exp(-z))
}

func TestPerPairGradientsMatchFiniteDifferences(t *testing.T) {
	e := newTestEngine(t)
	ds, err := e.NewDataset(testPairs(3, 1))
	if err != nil {
		t.Fatal(err)
	}
	lo := NewLoRA(e.Cfg, 3)
	rng := rand.New(rand.NewPCG(9, 9))
	for _, p := range lo.Params { // non-zero B so A also gets a gradient
		for j := range p.Data {
			p.Data[j] += float32(rng.NormFloat64() * 0.3)
		}
	}
	pg, err := e.PerPairGradients(context.Background(), ds, lo, 2) // chunk 2: batched and B=1 chunks
	if err != nil {
		t.Fatal(err)
	}
	const h = 1e-2
	for i := 0; i < ds.Len(); i++ {
		off := 0
		for pi, p := range lo.Params {
			for _, j := range []int{0, len(p.Data) / 2, len(p.Data) - 1} {
				plus, minus := lo.Clone(), lo.Clone()
				plus.Params[pi].Data[j] += h
				minus.Params[pi].Data[j] -= h
				fd := (lossAt(t, e, ds, plus, i) - lossAt(t, e, ds, minus, i)) / (2 * h)
				got := float64(pg.Grads[i][off+j])
				if math.Abs(fd-got) > 2e-3+0.03*math.Abs(fd) {
					t.Errorf("pair %d %s[%d]: autodiff %.6f, finite difference %.6f", i, lo.Names[pi], j, got, fd)
				}
			}
			off += len(p.Data)
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
	nz := 0
	for _, v := range a.Grads[0] {
		if v != 0 {
			nz++
		}
	}
	if nz == 0 || nz > len(a.Grads[0])/2 {
		t.Errorf("fresh LoRA: want only the B factors (half the vector) non-zero, got %d of %d", nz, len(a.Grads[0]))
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
}

func TestBadInput(t *testing.T) {
	e := newTestEngine(t)
	ds, err := e.NewDataset([]Pair{
		{ID: "long", Prompt: "aaaaaaaaaaaaaaaaaaaa", Chosen: "a", Rejected: "b"},
		{ID: "empty", Prompt: "a", Chosen: "", Rejected: "b"},
		{ID: "ok", Prompt: "a", Chosen: "a", Rejected: "b"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if ds.Len() != 1 || len(ds.Rejected) != 2 {
		t.Fatalf("want 1 usable and 2 rejected pairs, got %d and %v", ds.Len(), ds.Rejected)
	}
	if _, err := e.Train(context.Background(), ds.Subset(nil), Options{}); !errors.Is(err, ErrConfig) {
		t.Errorf("empty dataset: want ErrConfig, got %v", err)
	}
	if _, err := e.Train(context.Background(), ds, Options{LR: -1}); !errors.Is(err, ErrConfig) {
		t.Errorf("negative LR: want ErrConfig, got %v", err)
	}
	if _, err := NewBase(Config{Dim: 7, Layers: 1, Heads: 2, FF: 4, MaxLen: 8, LoRARank: 1, LoRAAlpha: 1}, 1); !errors.Is(err, ErrConfig) {
		t.Errorf("bad heads: want ErrConfig, got %v", err)
	}
}
