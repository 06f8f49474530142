package generate

import (
	"context"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/congrad-beam/congrad/gpu/model"
)

var tiny = model.NewTiny(2)

func newGen(t *testing.T, rows int) *Generator {
	t.Helper()
	g, err := New(tiny, rows)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGenerateSeededAndBatchIndependent(t *testing.T) {
	prompts := []string{"Hello", "Привет, как дела?", "你好"}
	o := SampleOptions{N: 2, Temperature: 0.9, TopP: 0.95, MaxTokens: 12, Seed: 7}
	ctx := context.Background()
	g4 := newGen(t, 4)
	a, err := g4.Generate(ctx, prompts, o)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := g4.Generate(ctx, prompts, o)
	// Rows are refilled in a different order with 2 rows per call.
	c, err := newGen(t, 2).Generate(ctx, prompts[1:], o)
	if err != nil {
		t.Fatal(err)
	}
	for p := range prompts {
		if len(a[p]) != 2 {
			t.Fatalf("prompt %d: %d samples", p, len(a[p]))
		}
		for i := range a[p] {
			if a[p][i] != b[p][i] {
				t.Errorf("prompt %d sample %d not reproducible: %q vs %q", p, i, a[p][i], b[p][i])
			}
			if p > 0 && a[p][i] != c[p-1][i] {
				t.Errorf("prompt %d sample %d depends on its batch: %q vs %q", p, i, a[p][i], c[p-1][i])
			}
			if n := utf8.RuneCountInString(a[p][i]); n > 12 || !utf8.ValidString(a[p][i]) {
				t.Errorf("sample %q: %d runes or invalid UTF-8", a[p][i], n)
			}
		}
	}
	if a[0][0] == a[0][1] && a[1][0] == a[1][1] && a[2][0] == a[2][1] {
		t.Error("samples 0 and 1 identical for every prompt: sample index not in the seed")
	}
	o.Seed = 8
	d, _ := g4.Generate(ctx, prompts, o)
	if d[0][0] == a[0][0] && d[1][0] == a[1][0] && d[2][0] == a[2][0] {
		t.Error("seed does not change samples")
	}
}

func TestGreedyAndStop(t *testing.T) {
	g := newGen(t, 4)
	ctx := context.Background()
	out, err := g.Generate(ctx, []string{"abc"}, SampleOptions{N: 3, MaxTokens: 10})
	if err != nil {
		t.Fatal(err)
	}
	if out[0][0] != out[0][1] || out[0][1] != out[0][2] {
		t.Fatalf("greedy samples differ: %q", out[0])
	}
	full := out[0][0]
	if len(full) < 2 {
		t.Skipf("greedy continuation %q too short to test stop strings", full)
	}
	stop := full[1:2]
	cut, _ := g.Generate(ctx, []string{"abc"}, SampleOptions{N: 1, MaxTokens: 10, Stop: []string{stop}})
	if want := full[:strings.Index(full, stop)]; cut[0][0] != want {
		t.Errorf("stop %q: got %q want %q", stop, cut[0][0], want)
	}
	if _, err := g.Generate(ctx, []string{"x"}, SampleOptions{TopP: 2}); err == nil {
		t.Error("top_p 2 accepted")
	}
	// More than the model's positions (32 here): the prompt is cut from the
	// left and generation stops at the last position instead of failing.
	short := *tiny.Config
	short.MaxPositionEmbeddings = 32
	gs, _ := New(&model.Model{Config: &short, Tok: model.ByteTokenizer{}, Weights: tiny.Weights}, 2)
	long := strings.Repeat("é", 30) // 60 byte tokens
	out, err = gs.Generate(ctx, []string{long}, SampleOptions{MaxTokens: 100, Temperature: 1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if n := utf8.RuneCountInString(out[0][0]); n > 16 || n == 0 {
		t.Errorf("generated %d characters for the 16 positions left", n)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := g.Generate(cctx, []string{"x"}, SampleOptions{}); err == nil {
		t.Error("cancelled context ignored")
	}
}

func TestPickTopP(t *testing.T) {
	logits := []float32{0, float32(math.Log(3)), float32(math.Log(6))} // probs 0.1, 0.3, 0.6
	r := model.NewRNG(1, "t")
	counts := make([]int, 3)
	for i := 0; i < 20000; i++ {
		counts[pick(logits, 1, 1, r)]++
	}
	for k, want := range []float64{0.1, 0.3, 0.6} {
		if got := float64(counts[k]) / 20000; math.Abs(got-want) > 0.015 {
			t.Errorf("token %d frequency %.3f want %.1f", k, got, want)
		}
	}
	for i := 0; i < 1000; i++ { // top_p 0.5: only the 0.6 token survives
		if k := pick(logits, 1, 0.5, r); k != 2 {
			t.Fatalf("top_p 0.5 drew token %d", k)
		}
	}
}

func TestScoreProbs(t *testing.T) {
	g := newGen(t, 2)
	prompts := []string{"Rate this answer. Score: ", "Bewerte. Punkte: ", "評価: "}
	ps, err := g.ScoreProbs(context.Background(), prompts)
	if err != nil {
		t.Fatal(err)
	}
	single, _ := newGen(t, 1).ScoreProbs(context.Background(), prompts[2:])
	for i, p := range ps {
		sum := 0.0
		for _, v := range p {
			if v <= 0 || v >= 1 {
				t.Fatalf("prompt %d: prob %v", i, v)
			}
			sum += v
		}
		if len(p) != 6 || sum > 1 {
			t.Fatalf("prompt %d: %v", i, p)
		}
	}
	for k := range single[0] {
		if math.Abs(single[0][k]-ps[2][k]) > 1e-6 {
			t.Errorf("batched vs single score probs differ: %v %v", ps[2], single[0])
		}
	}
}

// The cached step must give the logits a full recompute gives.
func TestKVCacheMatchesRecompute(t *testing.T) {
	gemma2, err := model.ParseConfig([]byte(`{"model_type":"gemma2","vocab_size":259,"hidden_size":32,"intermediate_size":48,
	 "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,"max_position_embeddings":64,
	 "query_pre_attn_scalar":16,"attn_logit_softcapping":5.0,"final_logit_softcapping":3.0,"sliding_window":3}`))
	if err != nil {
		t.Fatal(err)
	}
	gm, _ := New(&model.Model{Config: gemma2, Tok: model.ByteTokenizer{}, Weights: model.InitWeights(gemma2, 4)}, 2)
	for name, g := range map[string]*Generator{"llama-tiny": newGen(t, 2), "gemma2-sliding": gm} {
		seqs := [][]int{{256, 72, 105}, {256, 208, 159, 208, 184, 32}}
		const T = 16
		dec := &decoder{g: g, t: T}
		if _, err := dec.prefill(seqs); err != nil {
			t.Fatal(err)
		}
		next := []int{33, 46}
		cached, err := dec.step([]int32{33, 46}, []int32{3, 6})
		dec.free()
		if err != nil {
			t.Fatal(err)
		}
		full, err := g.logitsAt([][]int{append(seqs[0], next[0]), append(seqs[1], next[1])}, T)
		if err != nil {
			t.Fatal(err)
		}
		for r := range full {
			for v := range full[r] {
				if d := math.Abs(float64(full[r][v] - cached[r][v])); d > 1e-4 {
					t.Fatalf("%s row %d token %d: cached %v vs recomputed %v", name, r, v, cached[r][v], full[r][v])
				}
			}
		}
	}
	g := newGen(t, 2)
	// And whole generations agree with the recompute path.
	o := SampleOptions{N: 3, Temperature: 0.8, MaxTokens: 10, Seed: 3}
	a, err := g.Generate(context.Background(), []string{"Hallo", "مرحبا"}, o)
	if err != nil {
		t.Fatal(err)
	}
	slow := newGen(t, 2)
	slow.noCache = true
	b, _ := slow.Generate(context.Background(), []string{"Hallo", "مرحبا"}, o)
	for p := range a {
		for i := range a[p] {
			if a[p][i] != b[p][i] {
				t.Errorf("prompt %d sample %d: cached %q vs recompute %q", p, i, a[p][i], b[p][i])
			}
		}
	}
}

// go test -run - -bench Generate -benchtime 2x ./gpu/generate
func BenchmarkGenerate(b *testing.B) {
	for _, noCache := range []bool{false, true} {
		name := map[bool]string{false: "kvcache", true: "recompute"}[noCache]
		b.Run(name, func(b *testing.B) {
			g, _ := New(tiny, 8)
			g.noCache = noCache
			o := SampleOptions{N: 8, Temperature: 0.7, TopP: 0.9, MaxTokens: 96, Seed: 1}
			for i := 0; i < b.N; i++ {
				if _, err := g.Generate(context.Background(), []string{"Write a short poem about the sea."}, o); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*8*96)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// Every EOS id of the model stops a sample, not only the tokenizer's first
// (Llama-3 Instruct lists <|eot_id|> as a second eos_token_id).
func TestEveryEOSIDStops(t *testing.T) {
	ctx := context.Background()
	g := newGen(t, 2)
	out, err := g.Generate(ctx, []string{"abc"}, SampleOptions{N: 1, MaxTokens: 12})
	if err != nil {
		t.Fatal(err)
	}
	// An ASCII byte after the first character becomes an extra EOS id (ASCII,
	// so the text before it decodes the same whether or not it was cut).
	full := out[0][0]
	at := strings.IndexFunc(full, func(r rune) bool { return r < 128 })
	if at == 0 {
		at = 1 + strings.IndexFunc(full[1:], func(r rune) bool { return r < 128 })
	}
	if at <= 0 {
		t.Fatalf("greedy continuation %q has no ASCII byte after its start", full)
	}
	stopAt := int(full[at])
	cfg := *tiny.Config
	cfg.EOSTokenID = model.IDList{model.ByteEOS}
	m := &model.Model{Config: &cfg, Tok: model.ByteTokenizer{}, Weights: tiny.Weights, GenerationEOS: model.IDList{stopAt}}
	g2, err := New(m, 2)
	if err != nil {
		t.Fatal(err)
	}
	cut, err := g2.Generate(ctx, []string{"abc"}, SampleOptions{N: 1, MaxTokens: 12})
	if err != nil {
		t.Fatal(err)
	}
	if want := full[:at]; cut[0][0] != want {
		t.Fatalf("extra eos id %d: got %q, want %q (full %q)", stopAt, cut[0][0], want, full)
	}
}
