package model

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// logitsOf runs the graph forward of m (float64) on toks.
func logitsOf(t *testing.T, m *Model, toks []int) []float64 {
	t.Helper()
	be, err := NewBackend(DefaultBackendSpec)
	if err != nil {
		t.Fatal(err)
	}
	cfg := m.Config
	ws, err := m.DeviceWeights(dtypes.Float64)
	if err != nil {
		t.Fatal(err)
	}
	exec, err := NewExec(be, func(in []*Node) *Node {
		wn := BindWeights(cfg, in[1:])
		return Logits(cfg, wn, Hidden(cfg, wn, nil, in[0]))
	})
	if err != nil {
		t.Fatal(err)
	}
	t32 := make([]int32, len(toks))
	for i, v := range toks {
		t32[i] = int32(v)
	}
	args := []any{tensors.FromFlatDataAndDimensions(t32, 1, len(toks))}
	for _, x := range ws {
		args = append(args, x)
	}
	out, err := exec.Exec(args...)
	if err != nil {
		t.Fatal(err)
	}
	return tensors.MustCopyFlatData[float64](out[0])
}

// mathsView is the config without the bookkeeping of which fields were defaulted.
func mathsView(c *Config) Config {
	v := *c
	v.defaulted = nil
	if len(v.RopeScaling) == 0 {
		v.RopeScaling = nil
	}
	for _, l := range []*IDList{&v.BOSTokenID, &v.EOSTokenID, &v.PadTokenID} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	if len(v.LayerTypes) == 0 {
		v.LayerTypes = nil
	}
	return v
}

// For each architecture, a config.json with the defaulted fields missing
// gives the same config and the same logits as one with them spelled out at
// Hugging Face's defaults for that model_type; the logits also equal the
// independent reference forward pass.
func TestConfigDefaultsAreHFs(t *testing.T) {
	cases := []struct{ name, minimal, spelled string }{
		{"llama",
			`{"model_type":"llama","vocab_size":259,"hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,
			  "num_attention_heads":4,"max_position_embeddings":64}`,
			`{"model_type":"llama","vocab_size":259,"hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,
			  "num_attention_heads":4,"max_position_embeddings":64,"num_key_value_heads":4,"head_dim":8,
			  "tie_word_embeddings":false,"rope_theta":10000.0,"rms_norm_eps":1e-6,"hidden_act":"silu",
			  "rope_scaling":null,"attention_bias":false,"mlp_bias":false,"attention_dropout":0.0,"bos_token_id":1,"eos_token_id":2}`},
		{"mistral",
			`{"model_type":"mistral","vocab_size":259,"hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,
			  "num_attention_heads":8,"max_position_embeddings":64}`,
			`{"model_type":"mistral","vocab_size":259,"hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,
			  "num_attention_heads":8,"max_position_embeddings":64,"num_key_value_heads":8,"head_dim":4,
			  "tie_word_embeddings":false,"rope_theta":10000.0,"rms_norm_eps":1e-6,"hidden_act":"silu",
			  "sliding_window":4096,"bos_token_id":1,"eos_token_id":2}`},
		{"gemma",
			`{"model_type":"gemma","vocab_size":259,"hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,
			  "num_attention_heads":16,"max_position_embeddings":64}`,
			`{"model_type":"gemma","vocab_size":259,"hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,
			  "num_attention_heads":16,"max_position_embeddings":64,"num_key_value_heads":16,"head_dim":256,
			  "tie_word_embeddings":true,"rope_theta":10000.0,"rms_norm_eps":1e-6,"hidden_act":"gelu_pytorch_tanh",
			  "hidden_activation":"gelu_pytorch_tanh","pad_token_id":0,"eos_token_id":1,"bos_token_id":2}`},
		{"gemma2",
			`{"model_type":"gemma2","vocab_size":259,"hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,
			  "num_attention_heads":8,"max_position_embeddings":64,"query_pre_attn_scalar":256}`,
			`{"model_type":"gemma2","vocab_size":259,"hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,
			  "num_attention_heads":8,"max_position_embeddings":64,"query_pre_attn_scalar":256,"num_key_value_heads":4,
			  "head_dim":256,"tie_word_embeddings":true,"rope_theta":10000.0,"rms_norm_eps":1e-6,
			  "hidden_activation":"gelu_pytorch_tanh","attn_logit_softcapping":50.0,"final_logit_softcapping":30.0,
			  "sliding_window":4096,"layer_types":["sliding_attention","full_attention"],
			  "pad_token_id":0,"eos_token_id":1,"bos_token_id":2}`},
	}
	toks := []int{2, 72, 228, 184, 150, 33, 10, 7, 255}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			minimal, err := ParseConfig([]byte(c.minimal))
			if err != nil {
				t.Fatal(err)
			}
			spelled, err := ParseConfig([]byte(c.spelled))
			if err != nil {
				t.Fatal(err)
			}
			mv, sv := mathsView(minimal), mathsView(spelled)
			sv.LayerTypes = nil // the default pattern, spelled out
			if !reflect.DeepEqual(mv, sv) {
				a, _ := json.Marshal(mv)
				b, _ := json.Marshal(sv)
				t.Fatalf("configs differ:\n missing: %s\n spelled: %s", a, b)
			}
			w := InitWeights(spelled, 5)
			r := NewRNG(8, "norms")
			for _, x := range w {
				if len(x.Dims) == 1 {
					for i := range x.Data {
						x.Data[i] += float32(0.3 * r.Normal())
					}
				}
			}
			var got [2][]float64
			for i, js := range []string{c.minimal, c.spelled} {
				m, err := Load(writeCheckpoint(t, js, w, nil))
				if err != nil {
					t.Fatal(err)
				}
				got[i] = logitsOf(t, m, toks)
			}
			want := refForward(spelled, w, toks)
			for p := range want {
				for v := range want[p] {
					a, b := got[0][p*spelled.VocabSize+v], got[1][p*spelled.VocabSize+v]
					if a != b {
						t.Fatalf("logit [%d,%d]: %v with defaults missing, %v spelled out", p, v, a, b)
					}
					if math.Abs(a-want[p][v]) > 1e-9 {
						t.Fatalf("logit [%d,%d]: graph %v, reference %v", p, v, a, want[p][v])
					}
				}
			}
		})
	}
}

// A Llama config.json without tie_word_embeddings is untied (HF's
// LlamaConfig default): the checkpoint's lm_head.weight is what the logits
// use. A tied config with a different lm_head.weight, or any tensor the
// model does not use, fails to load with the tensor named.
func TestCheckpointTensorsAreAllUsed(t *testing.T) {
	base := `{"model_type":"llama","vocab_size":259,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":1,
	  "num_attention_heads":2,"num_key_value_heads":1,"max_position_embeddings":32%s}`
	untied, err := ParseConfig([]byte(strings.Replace(base, "%s", "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if untied.Tied() {
		t.Fatal("Llama without tie_word_embeddings must be untied")
	}
	w := InitWeights(untied, 3)
	m, err := Load(writeCheckpoint(t, strings.Replace(base, "%s", "", 1), w, nil))
	if err != nil {
		t.Fatal(err)
	}
	toks := []int{1, 50, 60, 70}
	got, want := logitsOf(t, m, toks), refForward(untied, w, toks)
	if math.Abs(got[3*259+5]-want[3][5]) > 1e-9 {
		t.Fatal("untied logits do not use lm_head.weight")
	}

	tiedJSON := strings.Replace(base, "%s", `,"tie_word_embeddings":true`, 1)
	err = loadErr(t, tiedJSON, w)
	if err == nil || !strings.Contains(err.Error(), "lm_head.weight") {
		t.Fatalf("tied config with a different lm_head: err = %v", err)
	}
	same := copyWeights(w)
	same["lm_head.weight"] = &Tensor{Dims: w["model.embed_tokens.weight"].Dims, Data: w["model.embed_tokens.weight"].Data}
	if m, err := Load(writeCheckpoint(t, tiedJSON, same, nil)); err != nil || m.Weights["lm_head.weight"] != nil {
		t.Fatalf("tied config with lm_head equal to the embeddings: %v", err)
	}

	extra := copyWeights(w)
	extra["model.layers.0.self_attn.q_proj.bias"] = &Tensor{Dims: []int{16}, Data: make([]float32, 16)}
	if err := loadErr(t, strings.Replace(base, "%s", "", 1), extra); err == nil || !strings.Contains(err.Error(), "q_proj.bias") {
		t.Fatalf("unused tensor: err = %v", err)
	}

	// RoPE inv_freq buffers of older conversions: accepted when they match rope_theta.
	inv := copyWeights(w)
	d := untied.HeadDim
	f := &Tensor{Dims: []int{d / 2}, Data: make([]float32, d/2)}
	for i := range f.Data {
		f.Data[i] = float32(1 / math.Pow(10000, float64(2*i)/float64(d)))
	}
	inv["model.layers.0.self_attn.rotary_emb.inv_freq"] = f
	if _, err := Load(writeCheckpoint(t, strings.Replace(base, "%s", "", 1), inv, nil)); err != nil {
		t.Fatalf("matching inv_freq: %v", err)
	}
	if err := loadErr(t, strings.Replace(base, "%s", `,"rope_theta":500000`, 1), inv); err == nil || !strings.Contains(err.Error(), "inv_freq") {
		t.Fatalf("inv_freq for another theta: err = %v", err)
	}
}

func loadErr(t *testing.T, cfg string, w map[string]*Tensor) error {
	t.Helper()
	_, err := Load(writeCheckpoint(t, cfg, w, nil))
	return err
}

func copyWeights(w map[string]*Tensor) map[string]*Tensor {
	c := make(map[string]*Tensor, len(w))
	for k, v := range w {
		c[k] = v
	}
	return c
}

// The newer layout rope_parameters: {rope_theta: ...} is read.
func TestRopeParametersLayout(t *testing.T) {
	base := `{"model_type":"llama","vocab_size":259,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":1,
	  "num_attention_heads":2,"max_position_embeddings":32,%s}`
	a, err := ParseConfig([]byte(strings.Replace(base, "%s", `"rope_parameters":{"rope_type":"default","rope_theta":500000.0}`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseConfig([]byte(strings.Replace(base, "%s", `"rope_theta":500000`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if a.RopeTheta != 500000 || !reflect.DeepEqual(mathsView(a), mathsView(b)) {
		t.Fatalf("rope_parameters not read: θ = %v", a.RopeTheta)
	}
	if _, err := ParseConfig([]byte(strings.Replace(base, "%s", `"rope_theta":10000,"rope_parameters":{"rope_theta":500000}`, 1))); !errors.Is(err, ErrConfig) {
		t.Errorf("disagreeing θ accepted: %v", err)
	}
}

// Every field that changes the maths in a way this package does not
// implement is refused, and the error names it.
func TestUnimplementedFieldsRefusedByName(t *testing.T) {
	llama := `{"model_type":"llama","vocab_size":259,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":2,
	  "num_attention_heads":2,"max_position_embeddings":32%s}`
	gemma2 := `{"model_type":"gemma2","vocab_size":259,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":2,
	  "num_attention_heads":2,"num_key_value_heads":1,"head_dim":8,"max_position_embeddings":32%s}`
	gemma := `{"model_type":"gemma","vocab_size":259,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":2,
	  "num_attention_heads":2,"num_key_value_heads":1,"head_dim":8,"max_position_embeddings":32%s}`
	cases := []struct{ base, extra, field string }{
		{llama, `,"rope_scaling":{"rope_type":"llama3","factor":8.0}`, "rope_scaling"},
		{llama, `,"rope_parameters":{"rope_type":"yarn","rope_theta":10000,"factor":4}`, "rope_parameters.factor"},
		{llama, `,"rope_parameters":{"rope_type":"linear","rope_theta":10000}`, "rope_parameters.rope_type"},
		{llama, `,"partial_rotary_factor":0.5`, "partial_rotary_factor"},
		{llama, `,"attention_bias":true`, "attention_bias"},
		{llama, `,"mlp_bias":true`, "mlp_bias"},
		{llama, `,"attention_dropout":0.1`, "attention_dropout"},
		{llama, `,"hidden_act":"gelu"`, "hidden_act"},
		{llama, `,"hidden_act":"relu"`, "hidden_act"},
		{llama, `,"quantization_config":{"quant_method":"gptq"}`, "quantization_config"},
		{llama, `,"architectures":["LlamaForSequenceClassification"]`, "architectures"},
		{llama, `,"layer_types":["sliding_attention","full_attention"]`, "layer_types"},
		{llama, `,"use_bidirectional_attention":true`, "use_bidirectional_attention"},
		{gemma2, `,"attn_logit_softcapping":50,"final_logit_softcapping":30`, "query_pre_attn_scalar"},
		{gemma2, `,"query_pre_attn_scalar":8,"sliding_window":null`, "sliding_window"},
		{gemma2, `,"query_pre_attn_scalar":8,"final_logit_softcapping":0`, "final_logit_softcapping"},
		{gemma2, `,"query_pre_attn_scalar":8,"hidden_activation":"gelu"`, "hidden_activation"},
		{gemma, `,"hidden_act":"gelu"`, "hidden_act"}, // Gemma 1.0: transformers releases disagree
		{`{"model_type":"qwen2"%s}`, ``, "model_type"},
		{`{"model_type":""%s}`, ``, "model_type"},
	}
	for _, c := range cases {
		js := strings.Replace(c.base, "%s", c.extra, 1)
		_, err := ParseConfig([]byte(js))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: err = %v, want one naming %s", c.extra, err, c.field)
		}
	}
	// What HF itself ignores for a model_type is ignored here too.
	c, err := ParseConfig([]byte(strings.Replace(llama, "%s", `,"final_logit_softcapping":30,"sliding_window":4,"query_pre_attn_scalar":3,"pretraining_tp":1,"torch_dtype":"bfloat16"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if c.finalSoftcap() != 0 || c.slidingWindow(0) != 0 || c.attnScale() != 1/math.Sqrt(8) {
		t.Errorf("Gemma-2-only fields changed a Llama config: %+v", c)
	}
	// Gemma 1.1 style: hidden_activation set, hidden_act absent.
	if c, err := ParseConfig([]byte(strings.Replace(gemma, "%s", `,"hidden_activation":"gelu_pytorch_tanh"`, 1))); err != nil || c.Activation() != "gelu_pytorch_tanh" {
		t.Errorf("Gemma 1.1 activation: %v", err)
	}
}

// A config built in code and saved reads back to the same maths, and a
// sharded checkpoint (model.safetensors.index.json) loads only the shards the
// index names.
func TestSaveRoundTripAndShards(t *testing.T) {
	w4 := 4
	cfg, err := NewConfig(Config{ModelType: "gemma2", VocabSize: 259, HiddenSize: 16, IntermediateSize: 32,
		NumHiddenLayers: 2, NumAttentionHeads: 2, NumKeyValueHeads: 1, HeadDim: 8, MaxPositionEmbeddings: 32,
		SlidingWindow: &w4})
	if err != nil {
		t.Fatal(err)
	}
	m := &Model{Config: cfg, Weights: InitWeights(cfg, 2)}
	dir := t.TempDir()
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(mathsView(got.Config), mathsView(cfg)) {
		t.Fatalf("round trip changed the config:\n%+v\n%+v", got.Config, cfg)
	}

	// Shards: two files and an index; a stray extra .safetensors file is not read.
	sh := t.TempDir()
	cj, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	os.WriteFile(filepath.Join(sh, "config.json"), cj, 0o644)
	a, b := map[string]*Tensor{}, map[string]*Tensor{}
	index := map[string]string{}
	for n, x := range m.Weights {
		if strings.Contains(n, "layers.1.") {
			b[n], index[n] = x, "model-00002-of-00002.safetensors"
		} else {
			a[n], index[n] = x, "model-00001-of-00002.safetensors"
		}
	}
	WriteSafetensors(filepath.Join(sh, "model-00001-of-00002.safetensors"), a, nil)
	WriteSafetensors(filepath.Join(sh, "model-00002-of-00002.safetensors"), b, nil)
	WriteSafetensors(filepath.Join(sh, "consolidated.safetensors"), map[string]*Tensor{"layers.0.attention.wq.weight": {Dims: []int{1}, Data: []float32{1}}}, nil)
	ij, _ := json.Marshal(map[string]any{"metadata": map[string]any{}, "weight_map": index})
	os.WriteFile(filepath.Join(sh, "model.safetensors.index.json"), ij, 0o644)
	if err := CheckDir(sh); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(sh); err != nil {
		t.Fatal(err)
	}
	index["model.norm.weight"] = "model-00002-of-00002.safetensors"
	ij, _ = json.Marshal(map[string]any{"weight_map": index})
	os.WriteFile(filepath.Join(sh, "model.safetensors.index.json"), ij, 0o644)
	if err := CheckDir(sh); err == nil || !strings.Contains(err.Error(), "model.norm.weight") {
		t.Fatalf("index disagreeing with the shards: %v", err)
	}
}
