package experiment

import (
	"math"
	"testing"

	"github.com/congrad-beam/congrad/gpu/model"
)

// The base model is a gpu/model model whose task embeddings follow the
// design: rows of the same symbol share a direction across languages, rows of
// one language share another, and everything is reproducible from the seed.
func TestBuildBaseEmbeddings(t *testing.T) {
	tk := DefaultTask()
	cfg := DefaultModel()
	a, err := BuildBase(tk, cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := model.CheckWeights(cfg, a.Weights); err != nil {
		t.Fatal(err)
	}
	b, _ := BuildBase(tk, cfg, 1)
	c, _ := BuildBase(tk, cfg, 2)
	row := func(m *model.Model, li, s int) []float32 {
		return m.Weights["model.embed_tokens.weight"].Data[int(tk.char(li, s))*cfg.HiddenSize:][:cfg.HiddenSize]
	}
	cos := func(x, y []float32) float64 {
		var xy, xx, yy float64
		for i := range x {
			xy += float64(x[i]) * float64(y[i])
			xx += float64(x[i]) * float64(x[i])
			yy += float64(y[i]) * float64(y[i])
		}
		return xy / math.Sqrt(xx*yy)
	}
	if cos(row(a, 0, 3), row(b, 0, 3)) != 1 || cos(row(a, 0, 3), row(c, 0, 3)) > 0.99 {
		t.Error("embeddings are not a function of the seed")
	}
	// Expected cosines: same symbol, other language 0.64/0.98 ≈ 0.65;
	// same language, other symbol 0.25/0.98 ≈ 0.26; neither ≈ 0 (all ± noise).
	var sameSym, sameLang, neither float64
	n := 0
	for s := 0; s < tk.Symbols; s++ {
		sameSym += cos(row(a, 0, s), row(a, 4, s))
		sameLang += cos(row(a, 0, s), row(a, 0, (s+1)%tk.Symbols))
		neither += cos(row(a, 0, s), row(a, 4, (s+1)%tk.Symbols))
		n++
	}
	sameSym, sameLang, neither = sameSym/float64(n), sameLang/float64(n), neither/float64(n)
	if !(sameSym > 0.4 && sameLang > 0.05 && sameLang < sameSym && math.Abs(neither) < 0.2) {
		t.Errorf("mean cosines: same symbol %.2f, same language %.2f, neither %.2f", sameSym, sameLang, neither)
	}
	bad := *cfg
	bad.VocabSize = 300
	if _, err := BuildBase(tk, &bad, 1); err == nil {
		t.Error("non-byte vocabulary: want an error")
	}
}
