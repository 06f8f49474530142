// Package embedded serves the project's own GoMLX model (gpu/model,
// gpu/generate) through serve.Engine. It is a separate package so that serve
// itself stays free of GoMLX and builds without it.
package embedded

import (
	"context"
	"fmt"

	"github.com/congrad-beam/congrad/gpu/generate"
	"github.com/congrad-beam/congrad/gpu/model"
	"github.com/congrad-beam/congrad/serve"
)

// Engine adapts a generate.Generator to serve.Engine.
type Engine struct {
	m *model.Model
	g *generate.Generator
}

// New wraps m; rows is the number of sequences per device call (0: the
// generator's default).
func New(m *model.Model, rows int) (*Engine, error) {
	g, err := generate.New(m, rows)
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	return &Engine{m: m, g: g}, nil
}

// Generate implements serve.Engine.
func (e *Engine) Generate(ctx context.Context, prompts []string, o serve.SampleOptions) ([][]string, error) {
	return e.g.Generate(ctx, prompts, generate.SampleOptions{
		N: o.N, Temperature: o.Temperature, TopP: o.TopP, MaxTokens: o.MaxTokens, Seed: o.Seed,
	})
}

// ScoreProbs implements serve.Engine: the model's next-token probabilities
// of "0".."5" (softmax over the whole vocabulary).
func (e *Engine) ScoreProbs(ctx context.Context, prompts []string) ([][]float64, error) {
	return e.g.ScoreProbs(ctx, prompts)
}

// CountTokens counts tokens with the model's tokenizer, for usage figures.
func (e *Engine) CountTokens(s string) int { return len(e.m.Tok.Encode(s)) }

// ServeOptions returns serve options that report this model and count its
// tokens; the generator is safe for concurrent use, but one device call at a
// time is what a single accelerator wants.
func (e *Engine) ServeOptions() serve.Options {
	return serve.Options{Model: e.m.Ref, CountTokens: e.CountTokens, MaxConcurrent: 1}
}

// Open loads the model ref ("tiny", "tiny:seed=N" or a checkpoint directory,
// see model.Open) and wraps it. What `congrad serve` needs:
//
//	eng, err := embedded.Open(ref, 0)
//	err = serve.ListenAndServe(ctx, "127.0.0.1:8000", eng, eng.ServeOptions())
func Open(ref string, rows int) (*Engine, error) {
	m, err := model.Open(ref)
	if err != nil {
		return nil, fmt.Errorf("embedded: open %s: %w", ref, err)
	}
	return New(m, rows)
}

// StartLocal opens the model ref and serves it on a free loopback port, for
// `congrad run` with no endpoint: point selfreward.HTTPConfig.BaseURL at
// the returned server's URL() and Close it when the pipeline is done.
func StartLocal(ctx context.Context, ref string) (*serve.Server, error) {
	eng, err := Open(ref, 0)
	if err != nil {
		return nil, err
	}
	return serve.Start(ctx, "127.0.0.1:0", eng, eng.ServeOptions())
}
