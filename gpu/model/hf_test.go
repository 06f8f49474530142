package model

import (
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

func fixture(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "model", name)
}

// A checkpoint directory with HF names, a config.json and a tokenizer.json
// loads through the same path a real Llama checkpoint would.
func TestHFCheckpointWithTokenizerJSON(t *testing.T) {
	dir := t.TempDir()
	cfg, err := ParseConfig([]byte(`{"model_type":"llama","vocab_size":269,"hidden_size":32,"intermediate_size":64,
	 "num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":1,"max_position_embeddings":64,
	 "tie_word_embeddings":false,"bos_token_id":266,"eos_token_id":[267],"pad_token_id":268}`))
	if err != nil {
		t.Fatal(err)
	}
	m := &Model{Config: cfg, Weights: InitWeights(cfg, 4)}
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	tj, err := os.ReadFile(fixture("bpe-tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "tokenizer.json"), tj, 0o644)
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Weights["lm_head.weight"]; !ok || got.Config.Tied() {
		t.Fatal("untied lm_head not loaded")
	}
	tok := got.Tok
	if tok.BOS() != 266 || tok.EOS() != 267 || tok.PAD() != 268 || tok.VocabSize() != 269 {
		t.Fatalf("special ids %d %d %d vocab %d", tok.BOS(), tok.EOS(), tok.PAD(), tok.VocabSize())
	}
	ids := tok.Encode("the thing")
	if len(ids) >= len("the thing") {
		t.Errorf("merges not applied: %v", ids)
	}
	for lang, s := range multilingual {
		ids := tok.Encode(s)
		for _, id := range ids {
			if id < 0 || id >= 266 {
				t.Fatalf("%s: id %d", lang, id)
			}
		}
		if back := tok.Decode(append([]int{266}, append(ids, 267)...)); back != s {
			t.Errorf("%s: %q -> %q", lang, s, back)
		}
	}
}

func TestOpenCachesAndBackendErrors(t *testing.T) {
	a, err := Open("tiny:seed=7")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Open("tiny:seed=7")
	c, _ := Open("tiny")
	if a != b || a == c || a.Backend == nil {
		t.Fatal("Open does not cache per ref")
	}
	if a.Weights["model.norm.weight"] == nil || a.Weights["model.embed_tokens.weight"].Data[5] == c.Weights["model.embed_tokens.weight"].Data[5] {
		t.Fatal("seed not applied")
	}
	for _, bad := range []string{"tiny:seed=x", "tiny:big", filepath.Join(t.TempDir(), "nope")} {
		if _, err := Open(bad); err == nil {
			t.Errorf("Open(%q) succeeded", bad)
		}
	}
	if _, err := NewBackend("xla:cuda"); err == nil || !strings.Contains(err.Error(), "-tags xla") {
		t.Errorf("xla without the build tag: %v", err)
	}
	if _, err := NewBackend("go:bogus_option"); err == nil {
		t.Error("bad go backend option accepted")
	}
}

// Gemma 2 specifics (1+w norms, scaled embeddings, GeGLU, four norms per
// layer, soft-capping, sliding window) build, stay finite and causal.
func TestGemma2ForwardFiniteAndCausal(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"model_type":"gemma2","vocab_size":259,"hidden_size":32,"intermediate_size":64,
	 "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,"max_position_embeddings":64,
	 "query_pre_attn_scalar":8,"attn_logit_softcapping":50.0,"final_logit_softcapping":30.0,"sliding_window":3}`))
	if err != nil {
		t.Fatal(err)
	}
	w := InitWeights(cfg, 9)
	if err := CheckWeights(cfg, w); err != nil {
		t.Fatal(err)
	}
	m := &Model{Config: cfg, Weights: w}
	ws, _ := m.DeviceWeights(dtypes.Float32)
	be, _ := NewBackend(DefaultBackendSpec)
	exec, err := NewExec(be, func(in []*Node) *Node {
		wn := BindWeights(cfg, in[1:])
		return Logits(cfg, wn, Hidden(cfg, wn, nil, in[0]))
	})
	if err != nil {
		t.Fatal(err)
	}
	run := func(toks []int32) []float32 {
		args := []any{tensors.FromFlatDataAndDimensions(toks, 1, len(toks))}
		for _, x := range ws {
			args = append(args, x)
		}
		out, err := exec.Exec(args...)
		if err != nil {
			t.Fatal(err)
		}
		return tensors.MustCopyFlatData[float32](out[0])
	}
	a := run([]int32{256, 1, 2, 3, 4, 5, 6, 7})
	b := run([]int32{256, 1, 2, 3, 4, 5, 6, 99})
	v := cfg.VocabSize
	for i := 0; i < 7*v; i++ {
		if a[i] != b[i] {
			t.Fatalf("logit %d sees the future", i)
		}
	}
	for _, x := range a {
		if math.IsNaN(float64(x)) || math.Abs(float64(x)) > 30 {
			t.Fatalf("logit %v not finite or not soft-capped to 30", x)
		}
	}
}

func TestLoRAParamsValidation(t *testing.T) {
	ps, err := LoRAParams(TinyConfig(), LoRAOptions{Rank: 4, Targets: []string{"q_proj", "down_proj"}, InitBStd: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2*2*2 || ps[0].Name != "model.layers.0.self_attn.q_proj.lora_A.weight" || ps[3].Dims[0] != 64 {
		t.Fatalf("params %v", ps[0].Name)
	}
	if _, err := LoRAParams(TinyConfig(), LoRAOptions{Targets: []string{"attn"}}); err == nil {
		t.Error("unknown target accepted")
	}
	if _, err := LoRAParams(TinyConfig(), LoRAOptions{Rank: -1}); err == nil {
		t.Error("negative rank accepted")
	}
}
