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
	"math"
	"os"
	"sort"
	"strings"
)

// Family selects the few architectural differences between the supported
// model types.
type Family string

const (
	Llama   Family = "llama"   // RMSNorm(w), SwiGLU, untied or tied embeddings
	Mistral Family = "mistral" // Llama maths plus a sliding window on every layer
	Gemma   Family = "gemma"   // RMSNorm(1+w), GeGLU(tanh), embeddings scaled by sqrt(hidden), tied
	Gemma2  Family = "gemma2"  // Gemma plus post-norms, soft-capping, query_pre_attn_scalar, sliding window
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
//
// ParseConfig/LoadConfig apply Hugging Face semantics to a config.json: a
// field that is missing takes the default of that model_type's HF config
// class, both RoPE layouts (rope_theta, rope_parameters) are read, and every
// field that would change the maths in a way this package does not
// implement is refused with an error naming it (docs/CHECKPOINTS.md).
// NewConfig is for configs built in code, where Go zero values cannot say
// "missing": it fills ConGrad's own defaults (see NewConfig).
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
	LayerTypes            []string `json:"layer_types,omitempty"`

	// Read only to refuse what this implementation does not do, rather than
	// silently computing a different model.
	RopeScaling   json.RawMessage `json:"rope_scaling"`
	AttentionBias bool            `json:"attention_bias"`
	MLPBias       bool            `json:"mlp_bias"`

	// defaulted lists the config.json keys ParseConfig filled with HF
	// defaults, for error messages about tensors that do not fit.
	defaulted []string
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

// hfDefaults are the defaults of transformers' LlamaConfig, MistralConfig,
// GemmaConfig and Gemma2Config for the fields that change the maths or the
// shapes. A nil value means "computed" (num_key_value_heads = heads, head_dim
// = hidden/heads). Gemma-2's query_pre_attn_scalar is absent on purpose: its
// default was 224 in the first transformers release with Gemma-2 and 256
// later, so a config without it is refused.
var hfDefaults = map[Family]map[string]any{
	Llama: {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
		"num_attention_heads": 32, "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
		"tie_word_embeddings": false, "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2},
	Mistral: {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
		"num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 4096 * 32,
		"rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": false, "hidden_act": "silu",
		"sliding_window": 4096, "bos_token_id": 1, "eos_token_id": 2},
	Gemma: {"vocab_size": 256000, "hidden_size": 3072, "intermediate_size": 24576, "num_hidden_layers": 28,
		"num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 256, "max_position_embeddings": 8192,
		"rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": true,
		"pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2},
	Gemma2: {"vocab_size": 256000, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
		"num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "max_position_embeddings": 8192,
		"rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": true,
		"hidden_activation": "gelu_pytorch_tanh", "sliding_window": 4096,
		"final_logit_softcapping": 30.0, "attn_logit_softcapping": 50.0,
		"pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2},
}

// architectures maps model_type to the transformers class a causal-LM
// checkpoint names in "architectures".
var architectures = map[string]string{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
	"gemma": "GemmaForCausalLM", "gemma2": "Gemma2ForCausalLM"}

// ParseConfig decodes config.json bytes with Hugging Face semantics: fields
// missing (or null, where HF treats null as missing) take the HF default of
// the model_type, rope_parameters is read as well as rope_theta, and anything
// that changes the maths in a way this package does not implement is an
// error naming the field.
func ParseConfig(b []byte) (*Config, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%w: decode config.json: %v", ErrConfig, err)
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%w: decode config.json: %v", ErrConfig, err)
	}
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
	}
	present := func(k string) bool { v, ok := raw[k]; return ok && strings.TrimSpace(string(v)) != "null" }
	if _, ok := architectures[c.ModelType]; !ok {
		return nil, bad("model_type", "%q not supported (llama, mistral, gemma, gemma2)", c.ModelType)
	}
	fam := Family(c.ModelType)
	if present("architectures") {
		var arch []string
		if err := json.Unmarshal(raw["architectures"], &arch); err != nil || len(arch) != 1 || arch[0] != architectures[c.ModelType] {
			return nil, bad("architectures", "%s: only [%q] for model_type %q", raw["architectures"], architectures[c.ModelType], c.ModelType)
		}
	}
	if present("quantization_config") {
		return nil, bad("quantization_config", "quantized checkpoints are not supported")
	}

	// Fill the HF defaults of this model_type for missing fields.
	def := hfDefaults[fam]
	setInt := func(k string, dst *int) {
		if !present(k) {
			if v, ok := def[k]; ok {
				*dst = v.(int)
				c.defaulted = append(c.defaulted, k)
			}
		}
	}
	setInt("vocab_size", &c.VocabSize)
	setInt("hidden_size", &c.HiddenSize)
	setInt("intermediate_size", &c.IntermediateSize)
	setInt("num_hidden_layers", &c.NumHiddenLayers)
	setInt("num_attention_heads", &c.NumAttentionHeads)
	setInt("max_position_embeddings", &c.MaxPositionEmbeddings)
	if !present("num_key_value_heads") {
		c.defaulted = append(c.defaulted, "num_key_value_heads")
		if v, ok := def["num_key_value_heads"]; ok {
			c.NumKeyValueHeads = v.(int)
		} else {
			c.NumKeyValueHeads = c.NumAttentionHeads
		}
	}
	if !present("head_dim") {
		c.defaulted = append(c.defaulted, "head_dim")
		if v, ok := def["head_dim"]; ok {
			c.HeadDim = v.(int)
		} else if c.NumAttentionHeads > 0 {
			c.HeadDim = c.HiddenSize / c.NumAttentionHeads
		}
	}
	if !present("rms_norm_eps") {
		c.RMSNormEps = def["rms_norm_eps"].(float64)
		c.defaulted = append(c.defaulted, "rms_norm_eps")
	}
	if !present("tie_word_embeddings") {
		t := def["tie_word_embeddings"].(bool)
		c.TieWordEmbeddings = &t
		c.defaulted = append(c.defaulted, "tie_word_embeddings")
	}
	for k, dst := range map[string]*IDList{"bos_token_id": &c.BOSTokenID, "eos_token_id": &c.EOSTokenID, "pad_token_id": &c.PadTokenID} {
		if _, ok := raw[k]; !ok {
			if v, ok := def[k]; ok {
				*dst = IDList{v.(int)}
			}
		}
	}

	// RoPE: rope_theta, or the newer rope_parameters layout; scaling refused.
	if err := c.parseRope(raw, present, def["rope_theta"].(float64)); err != nil {
		return nil, err
	}
	if present("partial_rotary_factor") {
		var f float64
		if json.Unmarshal(raw["partial_rotary_factor"], &f) != nil || f != 1 {
			return nil, bad("partial_rotary_factor", "%s: partial RoPE not supported", raw["partial_rotary_factor"])
		}
	}

	// Fields that are plain HF defaults when absent and refused when set to
	// anything this package does not compute.
	if present("attention_dropout") {
		var f float64
		if json.Unmarshal(raw["attention_dropout"], &f) != nil || f != 0 {
			return nil, bad("attention_dropout", "%s: attention dropout not supported", raw["attention_dropout"])
		}
	}
	if present("use_bidirectional_attention") && strings.TrimSpace(string(raw["use_bidirectional_attention"])) != "false" {
		return nil, bad("use_bidirectional_attention", "only causal attention is supported")
	}
	if c.AttentionBias || c.MLPBias {
		f := "attention_bias"
		if !c.AttentionBias {
			f = "mlp_bias"
		}
		return nil, bad(f, "biases not supported")
	}

	// Family-specific fields; fields a family does not read in HF are zeroed
	// so that they cannot change our maths either.
	switch fam {
	case Llama:
		c.SlidingWindow, c.AttnLogitSoftcapping, c.FinalLogitSoftcapping, c.QueryPreAttnScalar = nil, nil, nil, 0
		c.HiddenActivation = ""
		if !present("hidden_act") {
			c.HiddenAct = def["hidden_act"].(string)
		}
	case Mistral:
		c.AttnLogitSoftcapping, c.FinalLogitSoftcapping, c.QueryPreAttnScalar = nil, nil, 0
		c.HiddenActivation = ""
		if !present("hidden_act") {
			c.HiddenAct = def["hidden_act"].(string)
		}
		if _, ok := raw["sliding_window"]; !ok {
			w := def["sliding_window"].(int)
			c.SlidingWindow = &w
			c.defaulted = append(c.defaulted, "sliding_window")
		}
	case Gemma:
		c.SlidingWindow, c.AttnLogitSoftcapping, c.FinalLogitSoftcapping, c.QueryPreAttnScalar = nil, nil, nil, 0
		act, err := gemmaActivation(present("hidden_act"), c.HiddenAct, present("hidden_activation"), c.HiddenActivation)
		if err != nil {
			return nil, err
		}
		c.HiddenAct, c.HiddenActivation = act, act
	case Gemma2:
		if !present("query_pre_attn_scalar") {
			return nil, bad("query_pre_attn_scalar", "missing, and HF's default changed between transformers releases (224, then 256): set it in config.json")
		}
		if !present("hidden_activation") {
			c.HiddenActivation = def["hidden_activation"].(string)
		}
		c.HiddenAct = ""
		for k, dst := range map[string]**float64{"attn_logit_softcapping": &c.AttnLogitSoftcapping, "final_logit_softcapping": &c.FinalLogitSoftcapping} {
			if _, ok := raw[k]; !ok {
				v := def[k].(float64)
				*dst = &v
				c.defaulted = append(c.defaulted, k)
			} else if *dst != nil && **dst <= 0 {
				return nil, bad(k, "%v: must be > 0 (or null for no capping)", **dst)
			}
		}
		if _, ok := raw["sliding_window"]; !ok {
			w := def["sliding_window"].(int)
			c.SlidingWindow = &w
			c.defaulted = append(c.defaulted, "sliding_window")
		} else if c.SlidingWindow == nil {
			return nil, bad("sliding_window", "null for gemma2 (HF's behaviour differs between releases): set the window")
		}
	}
	if err := c.checkLayerTypes(present("layer_types")); err != nil {
		return nil, err
	}
	sort.Strings(c.defaulted)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// gemmaActivation resolves Gemma (1)'s MLP activation. transformers before
// 4.48 used hidden_activation and fell back to gelu_pytorch_tanh, ignoring
// hidden_act; 4.48 and later use hidden_act (default gelu_pytorch_tanh). A
// config on which the two disagree (Gemma 1.0's "hidden_act": "gelu") is
// refused rather than guessed.
func gemmaActivation(hasAct bool, act string, hasActivation bool, activation string) (string, error) {
	old, nu := "gelu_pytorch_tanh", "gelu_pytorch_tanh"
	if hasActivation && activation != "" {
		old = activation
	}
	if hasAct && act != "" {
		nu = act
	}
	if canonicalAct(old) != canonicalAct(nu) {
		return "", fmt.Errorf("%w: hidden_act: %q with hidden_activation %q: transformers before 4.48 computes %s, later releases %s; set both to the one you mean",
			ErrConfig, act, activation, old, nu)
	}
	return old, nil
}

// canonicalAct maps HF activation names to the function they compute.
func canonicalAct(a string) string {
	switch a {
	case "silu", "swish":
		return "silu"
	case "gelu_pytorch_tanh", "gelu_new":
		return "gelu_tanh"
	}
	return a
}

func (c *Config) parseRope(raw map[string]json.RawMessage, present func(string) bool, defTheta float64) error {
	if !present("rope_theta") {
		c.RopeTheta = 0
	}
	if present("rope_parameters") {
		var rp map[string]json.RawMessage
		if err := json.Unmarshal(raw["rope_parameters"], &rp); err != nil {
			return fmt.Errorf("%w: rope_parameters: %v", ErrConfig, err)
		}
		keys := make([]string, 0, len(rp))
		for k := range rp {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v := rp[k]
			switch k {
			case "rope_type", "type":
				var t string
				if json.Unmarshal(v, &t) != nil || t != "default" {
					return fmt.Errorf("%w: rope_parameters.%s: %s not supported (plain RoPE only)", ErrConfig, k, v)
				}
			case "rope_theta":
				var th float64
				if err := json.Unmarshal(v, &th); err != nil || th <= 0 {
					return fmt.Errorf("%w: rope_parameters.rope_theta: %s", ErrConfig, v)
				}
				if c.RopeTheta != 0 && c.RopeTheta != th {
					return fmt.Errorf("%w: rope_theta %v and rope_parameters.rope_theta %v disagree", ErrConfig, c.RopeTheta, th)
				}
				c.RopeTheta = th
			default:
				return fmt.Errorf("%w: rope_parameters.%s: not supported (plain RoPE only)", ErrConfig, k)
			}
		}
	}
	if rs := strings.TrimSpace(string(c.RopeScaling)); rs == "null" {
		c.RopeScaling = nil
	} else if rs != "" {
		var m map[string]json.RawMessage
		ok := json.Unmarshal(c.RopeScaling, &m) == nil
		for k, v := range m {
			var t string
			if (k != "rope_type" && k != "type") || json.Unmarshal(v, &t) != nil || t != "default" {
				ok = false
			}
		}
		if !ok {
			return fmt.Errorf("%w: rope_scaling: %s not supported (plain RoPE only)", ErrConfig, rs)
		}
		c.RopeScaling = nil
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = defTheta
		c.defaulted = append(c.defaulted, "rope_theta")
	}
	return nil
}

// checkLayerTypes validates layer_types (newer transformers write it): the
// per-layer attention kind, which this package reads for Gemma-2 and Mistral.
func (c *Config) checkLayerTypes(present bool) error {
	if !present {
		c.LayerTypes = nil
		return nil
	}
	if len(c.LayerTypes) != c.NumHiddenLayers {
		return fmt.Errorf("%w: layer_types: %d entries for %d layers", ErrConfig, len(c.LayerTypes), c.NumHiddenLayers)
	}
	for i, t := range c.LayerTypes {
		switch {
		case t == "full_attention":
		case t == "sliding_attention" && (c.Family() == Gemma2 || c.Family() == Mistral) && c.SlidingWindow != nil:
		default:
			return fmt.Errorf("%w: layer_types[%d]: %q not supported for model_type %q", ErrConfig, i, t, c.ModelType)
		}
	}
	return nil
}

// NewConfig validates a config built in code. Go zero values cannot say
// "missing", so it fills ConGrad's own defaults, not HF's: num_key_value_heads
// = heads, head_dim = hidden/heads, tied embeddings when TieWordEmbeddings is
// nil, RoPE θ 10000, eps 1e-6, and for Gemma-2 query_pre_attn_scalar =
// head_dim. The result has every field explicit, so Model.Save writes a
// config.json that ParseConfig reads back to the same maths.
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
		t := true
		c.TieWordEmbeddings = &t
	}
	if c.Family() == Gemma2 && c.QueryPreAttnScalar == 0 {
		c.QueryPreAttnScalar = float64(c.HeadDim)
	}
	switch {
	case (c.Family() == Llama || c.Family() == Mistral) && c.HiddenAct == "":
		c.HiddenAct = "silu"
	case (c.Family() == Gemma || c.Family() == Gemma2) && c.HiddenActivation == "" && c.HiddenAct == "":
		c.HiddenActivation = "gelu_pytorch_tanh"
	}
}

// Family maps model_type to the architecture variant.
func (c *Config) Family() Family {
	switch c.ModelType {
	case "gemma":
		return Gemma
	case "gemma2":
		return Gemma2
	case "mistral":
		return Mistral
	default:
		return Llama
	}
}

// gemmaLike reports the Gemma maths: RMSNorm(1+w), scaled embeddings.
func (c *Config) gemmaLike() bool { return c.Family() == Gemma || c.Family() == Gemma2 }

// Tied reports whether lm_head shares the embedding matrix.
func (c *Config) Tied() bool { return c.TieWordEmbeddings == nil || *c.TieWordEmbeddings }

// Activation returns the MLP gate activation name HF uses for this config:
// hidden_act for Llama and Mistral, hidden_activation for Gemma-2, and for
// Gemma the one both transformers behaviours agree on.
// An empty field means the family's default (silu, gelu_pytorch_tanh).
func (c *Config) Activation() string {
	a := c.HiddenActivation
	switch c.Family() {
	case Llama, Mistral:
		if c.HiddenAct == "" {
			return "silu"
		}
		return c.HiddenAct
	case Gemma:
		if a == "" {
			a = c.HiddenAct
		}
	}
	if a == "" {
		return "gelu_pytorch_tanh"
	}
	return a
}

// attnScale is the factor on q·k: 1/sqrt(query_pre_attn_scalar) for
// Gemma-2, 1/sqrt(head_dim) otherwise.
func (c *Config) attnScale() float64 {
	if c.Family() == Gemma2 {
		return 1 / math.Sqrt(c.QueryPreAttnScalar)
	}
	return 1 / math.Sqrt(float64(c.HeadDim))
}

// attnSoftcap and finalSoftcap are Gemma-2's tanh caps (0: none).
func (c *Config) attnSoftcap() float64 {
	if c.Family() == Gemma2 && c.AttnLogitSoftcapping != nil {
		return *c.AttnLogitSoftcapping
	}
	return 0
}

func (c *Config) finalSoftcap() float64 {
	if c.Family() == Gemma2 && c.FinalLogitSoftcapping != nil {
		return *c.FinalLogitSoftcapping
	}
	return 0
}

// slidingWindow returns the window of layer i (keys with query-key distance
// < window are visible), or 0 for full causal attention: Gemma-2's sliding
// layers (even ones, or as layer_types says) and every Mistral layer.
func (c *Config) slidingWindow(i int) int {
	if c.SlidingWindow == nil {
		return 0
	}
	switch c.Family() {
	case Gemma2, Mistral:
	default:
		return 0
	}
	if len(c.LayerTypes) > 0 {
		if c.LayerTypes[i] == "sliding_attention" {
			return *c.SlidingWindow
		}
		return 0
	}
	if c.Family() == Mistral || i%2 == 0 {
		return *c.SlidingWindow
	}
	return 0
}

// Validate checks the fields the graph depends on.
func (c *Config) Validate() error {
	if _, ok := architectures[c.ModelType]; !ok {
		return fmt.Errorf("%w: model_type %q not supported (llama, mistral, gemma, gemma2)", ErrConfig, c.ModelType)
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
	if c.RMSNormEps <= 0 || c.RopeTheta <= 0 {
		return fmt.Errorf("%w: rms_norm_eps and rope_theta must be > 0", ErrConfig)
	}
	if c.Family() == Gemma2 && c.QueryPreAttnScalar <= 0 {
		return fmt.Errorf("%w: query_pre_attn_scalar must be > 0", ErrConfig)
	}
	if c.SlidingWindow != nil && *c.SlidingWindow <= 0 && (c.Family() == Gemma2 || c.Family() == Mistral) {
		return fmt.Errorf("%w: sliding_window must be > 0, got %d", ErrConfig, *c.SlidingWindow)
	}
	if len(c.LayerTypes) > 0 {
		if err := c.checkLayerTypes(true); err != nil {
			return err
		}
	}
	field := "hidden_act"
	if c.Family() == Gemma2 || (c.Family() == Gemma && c.HiddenActivation != "") {
		field = "hidden_activation"
	}
	switch c.Activation() {
	case "silu", "swish", "gelu_pytorch_tanh", "gelu_new":
	default:
		return fmt.Errorf("%w: %s %q not supported (silu, swish, gelu_pytorch_tanh, gelu_new)", ErrConfig, field, c.Activation())
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
	tied := true
	c := &Config{
		ModelType: "llama", VocabSize: 259, HiddenSize: 64, IntermediateSize: 128,
		NumHiddenLayers: 2, NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: 16,
		MaxPositionEmbeddings: 256, RMSNormEps: 1e-6, RopeTheta: 10000, HiddenAct: "silu", TieWordEmbeddings: &tied,
		BOSTokenID: IDList{ByteBOS}, EOSTokenID: IDList{ByteEOS}, PadTokenID: IDList{BytePAD},
	}
	c.fillDefaults()
	return c
}
