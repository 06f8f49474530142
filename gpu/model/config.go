// Package model is the model side of ConGrad: a decoder-only transformer of the
// Llama/Gemma family written as GoMLX graph functions, configured from a Hugging
// Face config.json and loaded from .safetensors by HF tensor names, plus an
// embedded tiny model (byte-level tokenizer, seeded weights) for local runs.
//
// Weights live on the host as float32 and are passed to compiled graphs as
// parameters, so the same graph code serves the tiny model and a real
// checkpoint, on the pure-Go backend and on XLA.
package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Family selects the few architectural differences between Llama and Gemma.
type Family string

const (
	Llama  Family = "llama"  // RMSNorm(w), SwiGLU, untied or tied embeddings
	Gemma  Family = "gemma"  // RMSNorm(1+w), GeGLU(tanh), embeddings scaled by sqrt(hidden), tied
	Gemma2 Family = "gemma2" // Gemma plus post-norms, soft-capping, query_pre_attn_scalar, sliding window
)

// ErrConfig is wrapped by every configuration validation error.
var ErrConfig = errors.New("invalid model config")

// IDList is a token id field that HF configs write either as one int or a list.
type IDList []int

// UnmarshalJSON accepts null, an int or a list of ints.
func (l *IDList) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "null" {
		*l = nil
		return nil
	}
	var one int
	if err := json.Unmarshal(b, &one); err == nil {
		*l = IDList{one}
		return nil
	}
	var many []int
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("token id: want int or list of ints, got %s", s)
	}
	*l = many
	return nil
}

// Config carries the HF config.json fields this implementation reads; the JSON
// names are HF's, so a checkpoint's config.json decodes directly.
type Config struct {
	ModelType             string   `json:"model_type"`
	VocabSize             int      `json:"vocab_size"`
	HiddenSize            int      `json:"hidden_size"`
	IntermediateSize      int      `json:"intermediate_size"`
	NumHiddenLayers       int      `json:"num_hidden_layers"`
	NumAttentionHeads     int      `json:"num_attention_heads"`
	NumKeyValueHeads      int      `json:"num_key_value_heads"`
	HeadDim               int      `json:"head_dim"`
	MaxPositionEmbeddings int      `json:"max_position_embeddings"`
	RMSNormEps            float64  `json:"rms_norm_eps"`
	RopeTheta             float64  `json:"rope_theta"`
	HiddenAct             string   `json:"hidden_act"`
	HiddenActivation      string   `json:"hidden_activation"`
	TieWordEmbeddings     *bool    `json:"tie_word_embeddings"`
	BOSTokenID            IDList   `json:"bos_token_id"`
	EOSTokenID            IDList   `json:"eos_token_id"`
	PadTokenID            IDList   `json:"pad_token_id"`
	QueryPreAttnScalar    float64  `json:"query_pre_attn_scalar"`
	AttnLogitSoftcapping  *float64 `json:"attn_logit_softcapping"`
	FinalLogitSoftcapping *float64 `json:"final_logit_softcapping"`
	SlidingWindow         *int     `json:"sliding_window"`

	// Read only to refuse what this implementation does not do, rather than
	// silently computing a different model.
	RopeScaling   json.RawMessage `json:"rope_scaling"`
	AttentionBias bool            `json:"attention_bias"`
	MLPBias       bool            `json:"mlp_bias"`
}

// LoadConfig reads and validates dir/config.json (or a path to the file itself).
func LoadConfig(path string) (*Config, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = path + "/config.json"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return ParseConfig(b)
}

// ParseConfig decodes config.json bytes, fills HF defaults and validates.
func ParseConfig(b []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%w: decode config.json: %v", ErrConfig, err)
	}
	c.fillDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// NewConfig is ParseConfig for a config built in code: it fills the HF
// defaults of a copy of c (head_dim, KV heads, tied embeddings, ...) and validates it.
func NewConfig(c Config) (*Config, error) {
	c.fillDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) fillDefaults() {
	if c.NumKeyValueHeads == 0 {
		c.NumKeyValueHeads = c.NumAttentionHeads
	}
	if c.HeadDim == 0 && c.NumAttentionHeads > 0 {
		c.HeadDim = c.HiddenSize / c.NumAttentionHeads
	}
	if c.RMSNormEps == 0 {
		c.RMSNormEps = 1e-6
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000
	}
	if c.TieWordEmbeddings == nil {
		// HF: Gemma ties by default, Llama's PretrainedConfig default is also true,
		// but Llama checkpoints set it explicitly; keep HF's default.
		t := true
		c.TieWordEmbeddings = &t
	}
	if c.Family() != Llama && c.QueryPreAttnScalar == 0 {
		c.QueryPreAttnScalar = float64(c.HeadDim)
	}
}

// Family maps model_type to the architecture variant.
func (c *Config) Family() Family {
	switch c.ModelType {
	case "gemma":
		return Gemma
	case "gemma2":
		return Gemma2
	default:
		return Llama
	}
}

// Tied reports whether lm_head shares the embedding matrix.
func (c *Config) Tied() bool { return c.TieWordEmbeddings == nil || *c.TieWordEmbeddings }

// Activation returns the MLP gate activation name ("silu" or "gelu_pytorch_tanh").
func (c *Config) Activation() string {
	a := c.HiddenActivation
	if a == "" {
		a = c.HiddenAct
	}
	if a == "" {
		if c.Family() == Llama {
			return "silu"
		}
		return "gelu_pytorch_tanh"
	}
	return a
}

// Validate checks the fields the graph depends on.
func (c *Config) Validate() error {
	switch c.ModelType {
	case "llama", "gemma", "gemma2", "":
	default:
		// mistral (sliding window on every layer) and qwen2 (q/k/v biases)
		// would load but compute something else.
		return fmt.Errorf("%w: model_type %q not supported (llama, gemma, gemma2)", ErrConfig, c.ModelType)
	}
	if rs := strings.TrimSpace(string(c.RopeScaling)); rs != "" && rs != "null" {
		return fmt.Errorf("%w: rope_scaling %s not supported (plain RoPE only)", ErrConfig, rs)
	}
	if c.AttentionBias || c.MLPBias {
		return fmt.Errorf("%w: attention_bias/mlp_bias not supported", ErrConfig)
	}
	pos := map[string]int{
		"vocab_size": c.VocabSize, "hidden_size": c.HiddenSize, "intermediate_size": c.IntermediateSize,
		"num_hidden_layers": c.NumHiddenLayers, "num_attention_heads": c.NumAttentionHeads,
		"num_key_value_heads": c.NumKeyValueHeads, "head_dim": c.HeadDim,
		"max_position_embeddings": c.MaxPositionEmbeddings,
	}
	for _, k := range []string{"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
		"num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings"} {
		if pos[k] <= 0 {
			return fmt.Errorf("%w: %s must be > 0, got %d", ErrConfig, k, pos[k])
		}
	}
	if c.NumAttentionHeads%c.NumKeyValueHeads != 0 {
		return fmt.Errorf("%w: num_attention_heads %d not a multiple of num_key_value_heads %d",
			ErrConfig, c.NumAttentionHeads, c.NumKeyValueHeads)
	}
	if c.HeadDim%2 != 0 {
		return fmt.Errorf("%w: head_dim %d must be even for RoPE", ErrConfig, c.HeadDim)
	}
	switch c.Activation() {
	case "silu", "swish", "gelu_pytorch_tanh", "gelu", "gelu_tanh":
	default:
		return fmt.Errorf("%w: activation %q not supported", ErrConfig, c.Activation())
	}
	return nil
}

// ParamCount is the number of base-model parameters (weights only).
func (c *Config) ParamCount() int64 {
	n := int64(0)
	for _, s := range c.WeightShapes() {
		p := int64(1)
		for _, d := range s.Dims {
			p *= int64(d)
		}
		n += p
	}
	return n
}

// WeightSpec names one tensor the model needs and its HF shape.
type WeightSpec struct {
	Name string
	Dims []int
}

// WeightShapes lists every tensor the config implies, HF names and layouts
// (linear weights are [out, in]), in a fixed order.
func (c *Config) WeightShapes() []WeightSpec {
	h, kv, hd, ff := c.HiddenSize, c.NumKeyValueHeads, c.HeadDim, c.IntermediateSize
	q := c.NumAttentionHeads * hd
	specs := []WeightSpec{{"model.embed_tokens.weight", []int{c.VocabSize, h}}}
	for i := 0; i < c.NumHiddenLayers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		specs = append(specs,
			WeightSpec{p + "input_layernorm.weight", []int{h}},
			WeightSpec{p + "self_attn.q_proj.weight", []int{q, h}},
			WeightSpec{p + "self_attn.k_proj.weight", []int{kv * hd, h}},
			WeightSpec{p + "self_attn.v_proj.weight", []int{kv * hd, h}},
			WeightSpec{p + "self_attn.o_proj.weight", []int{h, q}},
			WeightSpec{p + "post_attention_layernorm.weight", []int{h}},
			WeightSpec{p + "mlp.gate_proj.weight", []int{ff, h}},
			WeightSpec{p + "mlp.up_proj.weight", []int{ff, h}},
			WeightSpec{p + "mlp.down_proj.weight", []int{h, ff}},
		)
		if c.Family() == Gemma2 {
			specs = append(specs,
				WeightSpec{p + "pre_feedforward_layernorm.weight", []int{h}},
				WeightSpec{p + "post_feedforward_layernorm.weight", []int{h}})
		}
	}
	specs = append(specs, WeightSpec{"model.norm.weight", []int{h}})
	if !c.Tied() {
		specs = append(specs, WeightSpec{"lm_head.weight", []int{c.VocabSize, h}})
	}
	return specs
}

// TinyConfig is the embedded tiny model: byte-level vocabulary (256 bytes plus
// BOS, EOS, PAD), small enough that exact gradients and tests run on 2 CPU cores.
func TinyConfig() *Config {
	c := &Config{
		ModelType: "llama", VocabSize: 259, HiddenSize: 64, IntermediateSize: 128,
		NumHiddenLayers: 2, NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: 16,
		MaxPositionEmbeddings: 256, RMSNormEps: 1e-6, RopeTheta: 10000, HiddenAct: "silu",
		BOSTokenID: IDList{ByteBOS}, EOSTokenID: IDList{ByteEOS}, PadTokenID: IDList{BytePAD},
	}
	c.fillDefaults()
	return c
}
