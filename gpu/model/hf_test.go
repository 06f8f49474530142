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

func tokFixture(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "tokenizers", name)
}

// writeCheckpoint writes config.json (verbatim), model.safetensors and
// optional extra files into a new directory.
func writeCheckpoint(t *testing.T, configJSON string, w map[string]*Tensor, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(configJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteSafetensors(filepath.Join(dir, "model.safetensors"), w, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Checkpoint directories with a byte-level (Llama-3 layout) and a
// SentencePiece-style (Gemma layout) tokenizer.json load through the path a
// real checkpoint takes: HF-exact ids, BOS from the post-processor, EOS and
// PAD from config.json, and every language round-trips.
func TestHFCheckpointWithTokenizerJSON(t *testing.T) {
	cases := []struct {
		fixture, config string
		bos, eos, pad   int
	}{
		{"llama3-style.json", `{"model_type":"llama","vocab_size":961,"hidden_size":32,"intermediate_size":64,
		 "num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":1,"max_position_embeddings":64,
		 "bos_token_id":956,"eos_token_id":[957,960]}`, 956, 957, 957},
		{"gemma-style.json", `{"model_type":"gemma","vocab_size":1427,"hidden_size":32,"intermediate_size":64,
		 "num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"head_dim":16,"max_position_embeddings":64,
		 "bos_token_id":1,"eos_token_id":2,"pad_token_id":0}`, 1, 2, 0},
	}
	for _, c := range cases {
		t.Run(c.fixture, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(c.config))
			if err != nil {
				t.Fatal(err)
			}
			tj, err := os.ReadFile(tokFixture(c.fixture))
			if err != nil {
				t.Fatal(err)
			}
			dir := writeCheckpoint(t, c.config, InitWeights(cfg, 4), map[string]string{"tokenizer.json": string(tj)})
			if err := CheckDir(dir); err != nil {
				t.Fatal(err)
			}
			got, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Family() == Llama && (got.Config.Tied() || got.Weights["lm_head.weight"] == nil) {
				t.Fatal("Llama without tie_word_embeddings must use its lm_head (HF default false)")
			}
			tok := got.Tok
			if tok.BOS() != c.bos || tok.EOS() != c.eos || tok.PAD() != c.pad || tok.VocabSize() != cfg.VocabSize {
				t.Fatalf("special ids %d %d %d vocab %d", tok.BOS(), tok.EOS(), tok.PAD(), tok.VocabSize())
			}
			if ids := tok.Encode("the thing"); len(ids) >= len("the thing") {
				t.Errorf("merges not applied: %v", ids)
			}
			for lang, s := range multilingual {
				ids := tok.Encode(s)
				for _, id := range ids {
					if id < 0 || id >= cfg.VocabSize {
						t.Fatalf("%s: id %d", lang, id)
					}
				}
				if back := tok.Decode(append([]int{c.bos}, append(ids, c.eos)...)); back != s {
					t.Errorf("%s: %q -> %q", lang, s, back)
				}
			}
		})
	}
}

// tokenizer_config.json settings under which transformers would not use
// tokenizer.json as it is are refused, naming the field.
func TestTokenizerConfigRefusals(t *testing.T) {
	cfg := `{"model_type":"gemma","vocab_size":1427,"hidden_size":32,"intermediate_size":64,
	 "num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"head_dim":16,"max_position_embeddings":64}`
	c, err := ParseConfig([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	tj, _ := os.ReadFile(tokFixture("gemma-style.json"))
	w := InitWeights(c, 1)
	for tc, field := range map[string]string{
		`{"add_eos_token": true}`:     "add_eos_token",
		`{"add_bos_token": false}`:    "add_bos_token",
		`{"from_slow": true}`:         "from_slow",
		`{"add_prefix_space": false}`: "add_prefix_space",
	} {
		dir := writeCheckpoint(t, cfg, w, map[string]string{"tokenizer.json": string(tj), "tokenizer_config.json": tc})
		if err := CheckDir(dir); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: err = %v", tc, err)
		}
	}
	dir := writeCheckpoint(t, cfg, w, map[string]string{"tokenizer.json": string(tj),
		"tokenizer_config.json": `{"add_bos_token": true, "add_eos_token": false, "tokenizer_class": "GemmaTokenizer",
		  "bos_token": {"__type": "AddedToken", "content": "<s>", "special": true}}`})
	if err := CheckDir(dir); err != nil {
		t.Errorf("consistent tokenizer_config.json refused: %v", err)
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
