package experiment

import (
	"math"
	"math/rand/v2"

	"github.com/congrad-beam/congrad/train"
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

// BuildBase returns the frozen base model of the task: a seeded tiny
// transformer whose byte embeddings for the task's alphabets are
// embShared·u_symbol + embLang·v_language + embNoise·noise.
func BuildBase(t Task, cfg train.Config, seed uint64) (*train.Base, error) {
	base, err := train.NewBase(cfg, seed)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 0x656d62)) // "emb"
	gauss := func() []float64 {
		v := make([]float64, cfg.Dim)
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
			row := base.Embed.Data[int(t.char(li, s))*cfg.Dim:][:cfg.Dim]
			noise := gauss()
			for i := range row {
				row[i] = float32((embShared*sym[s][i] + embLang*lang[i] + embNoise*noise[i]) / norm)
			}
		}
	}
	return base, nil
}
