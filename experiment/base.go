package experiment

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/congrad-beam/congrad/gpu/model"
)

// Embedding mix of a language character: shared symbol meaning, language
// identity, and noise. The shared component stands in for the cross-lingual
// alignment a pretrained multilingual model has; without it nothing learned
// in one script could transfer to another (or to an unseen language).
const (
	embShared = 0.8
	embLang   = 0.5
	embNoise  = 0.3
)

// DefaultModel is the task's base model as a gpu/model config: Llama-style
// (RMSNorm, RoPE, SwiGLU, tied embeddings), 2 layers, width 32, 2 heads of 16,
// MLP 64, the byte vocabulary of the tiny model, sequences up to 32 tokens.
func DefaultModel() *model.Config {
	c, err := model.NewConfig(model.Config{ModelType: "llama", VocabSize: 259, HiddenSize: 32, IntermediateSize: 64,
		NumHiddenLayers: 2, NumAttentionHeads: 2, NumKeyValueHeads: 2, MaxPositionEmbeddings: 32,
		BOSTokenID: model.IDList{model.ByteBOS}, EOSTokenID: model.IDList{model.ByteEOS}, PadTokenID: model.IDList{model.BytePAD}})
	if err != nil { // a constant config: only a change to this function can get here
		panic(err)
	}
	return c
}

// DefaultModelV2 is DefaultModel with an untied output head (lm_head drawn
// like every other matrix): with tied embeddings the random model mostly
// repeats its last input symbol (the residual stream stays close to that
// symbol's embedding), so responses sampled from it are nearly all the
// same; task v2 samples its candidates from the policy and needs a base
// model that spreads its mass over the alphabet, as a pretrained model does.
func DefaultModelV2() *model.Config {
	c := *DefaultModel()
	untied := false
	c.TieWordEmbeddings = &untied
	out, err := model.NewConfig(c)
	if err != nil {
		panic(err)
	}
	return out
}

// BuildBase returns the frozen base model of the task: a gpu/model model of
// config cfg (byte tokenizer, so cfg.VocabSize must be 259) with every weight
// drawn from seed, whose byte embeddings for the task's alphabets are then
// set to embShared·u_symbol + embLang·v_language + embNoise·noise.
func BuildBase(t Task, cfg *model.Config, seed uint64) (*model.Model, error) {
	if cfg == nil || cfg.VocabSize != (model.ByteTokenizer{}).VocabSize() {
		return nil, fmt.Errorf("experiment: base model needs the byte vocabulary (259), got config %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("experiment: base model: %w", err)
	}
	m := &model.Model{Ref: fmt.Sprintf("experiment-base:seed=%d", seed), Config: cfg, Tok: model.ByteTokenizer{},
		Weights: model.InitWeights(cfg, seed)}
	emb := m.Weights["model.embed_tokens.weight"]
	dim := cfg.HiddenSize
	rng := rand.New(rand.NewPCG(seed, 0x656d62)) // "emb"
	gauss := func() []float64 {
		v := make([]float64, dim)
		for i := range v {
			v[i] = rng.NormFloat64()
		}
		return v
	}
	sym := make([][]float64, t.Symbols)
	for s := range sym {
		sym[s] = gauss()
	}
	norm := math.Sqrt(embShared*embShared + embLang*embLang + embNoise*embNoise)
	for li := range t.Langs {
		lang := gauss()
		for s := 0; s < t.Symbols; s++ {
			row := emb.Data[int(t.char(li, s))*dim:][:dim]
			noise := gauss()
			for i := range row {
				row[i] = float32((embShared*sym[s][i] + embLang*lang[i] + embNoise*noise[i]) / norm)
			}
		}
	}
	return m, nil
}
