package experiment

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/congrad-beam/congrad/train"
)

// The sampler's log π(y|x) must be train's sequence log-probability (the
// model judges its own samples with it), its samples must stay in the
// language's alphabet, and different uniforms must give different samples.
func TestSamplerMatchesEngine(t *testing.T) {
	cfg := DefaultConfigV2()
	base, err := BuildBase(cfg.Task, cfg.Model, 3)
	if err != nil {
		t.Fatal(err)
	}
	e, err := newEngine(cfg, base)
	if err != nil {
		t.Fatal(err)
	}
	s, err := newSampler(base.Backend, cfg.Model, 1+cfg.Task.PromptLen+cfg.Task.RespLen, 16)
	if err != nil {
		t.Fatal(err)
	}
	li := 3
	allowed := make([]int, cfg.Task.Symbols)
	for k := range allowed {
		allowed[k] = int(cfg.Task.char(li, k))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	prompts := cfg.Task.Prompts(3, 0, li)[:20]
	var jobs []sampleJob
	for _, p := range prompts {
		ids := make([]int, len(p))
		for k, sym := range p {
			ids[k] = int(cfg.Task.char(li, sym))
		}
		u := make([]float64, cfg.Task.RespLen)
		for k := range u {
			u[k] = rng.Float64()
		}
		jobs = append(jobs, sampleJob{prompt: ids, allowed: allowed, u: u})
	}
	toks, lp, err := s.sample(base, jobs)
	if err != nil {
		t.Fatal(err)
	}
	var pairs []train.Pair
	seen := map[string]bool{}
	for i, tk := range toks {
		b := make([]byte, len(tk))
		for k, id := range tk {
			if id < allowed[0] || id > allowed[len(allowed)-1] {
				t.Fatalf("sample %d: token %d outside the alphabet", i, id)
			}
			b[k] = byte(id)
		}
		seen[string(b)] = true
		pairs = append(pairs, train.Pair{ID: "x", Lang: "l1", Prompt: cfg.Task.text(li, prompts[i]), Chosen: string(b), Rejected: string(b)})
	}
	if len(seen) < 15 {
		t.Errorf("only %d distinct samples of 20 from the random base model", len(seen))
	}
	ds, err := e.NewDataset(pairs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range lp {
		if math.Abs(lp[i]-ds.RefW[i]) > 1e-3 {
			t.Errorf("sample %d: sampler log π %.5f, engine %.5f", i, lp[i], ds.RefW[i])
		}
	}
}
