package embedded_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/congrad-beam/congrad/gpu/generate"
	"github.com/congrad-beam/congrad/gpu/model"
	"github.com/congrad-beam/congrad/selfreward"
	"github.com/congrad-beam/congrad/serve"
	"github.com/congrad-beam/congrad/serve/embedded"
)

// TestEmbeddedOverHTTP serves the tiny GoMLX model on 127.0.0.1 and checks
// that what comes over HTTP is what the generator gives in process: the same
// seeded samples, and first-token log-probs equal to its score probabilities.
func TestEmbeddedOverHTTP(t *testing.T) {
	m := model.NewTiny(3)
	eng, err := embedded.New(m, 4)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := serve.Start(ctx, "127.0.0.1:0", eng, eng.ServeOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	prompt := "Wie spät ist es?"
	b, err := selfreward.NewHTTPBackend(selfreward.HTTPConfig{BaseURL: s.URL(), Model: m.Ref, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Generate(ctx, prompt, 2, selfreward.SampleOptions{Temperature: 0.7, TopP: 0.9, MaxTokens: 6, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	g, _ := generate.New(m, 4)
	want, err := g.Generate(ctx, []string{prompt}, generate.SampleOptions{N: 2, Temperature: 0.7, TopP: 0.9, MaxTokens: 6, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	for i := range want[0] {
		// JSON carries valid UTF-8 only; a byte model may emit invalid bytes,
		// which the server's encoder replaces. Compare after the same mapping.
		w, _ := json.Marshal(want[0][i])
		h, _ := json.Marshal(got[i].Text)
		if !bytes.Equal(w, h) {
			t.Fatalf("sample %d over HTTP %q, in process %q", i, got[i].Text, want[0][i])
		}
	}

	judge := "Rate it.\nScore: "
	body, _ := json.Marshal(map[string]any{"model": m.Ref, "prompt": judge, "max_tokens": 1, "seed": 1, "logprobs": 6})
	resp, err := http.Post(s.URL()+"/v1/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Choices []struct {
			Logprobs struct {
				TopLogprobs []map[string]float64 `json:"top_logprobs"`
			} `json:"logprobs"`
		} `json:"choices"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d: %v", resp.StatusCode, err)
	}
	probs, err := g.ScoreProbs(ctx, []string{judge})
	if err != nil {
		t.Fatal(err)
	}
	top := r.Choices[0].Logprobs.TopLogprobs[0]
	for d, p := range probs[0] {
		lp, ok := top[string(rune('0'+d))]
		if !ok || math.Abs(math.Exp(lp)-p) > 1e-9 {
			t.Fatalf("score token %d: over HTTP %v (present %v), in process %v", d, math.Exp(lp), ok, p)
		}
	}
}

func TestStartLocal(t *testing.T) {
	s, err := embedded.StartLocal(context.Background(), "tiny:seed=4")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	resp, err := http.Get(s.URL() + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct{ Data []struct{ ID string } }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || len(v.Data) != 1 || v.Data[0].ID != "tiny:seed=4" {
		t.Fatalf("models: %v %+v", err, v)
	}
	if _, err := embedded.StartLocal(context.Background(), "/no/such/checkpoint"); err == nil {
		t.Fatal("a missing checkpoint must fail")
	}
}
