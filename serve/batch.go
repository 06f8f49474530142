package serve

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Requests that arrive within Options.BatchWindow of each other and share
// every sampling setting (seed included) are sent to the engine as one call:
// a device runs a batch of rows for about the price of one. The Engine
// contract (sample i of a prompt depends only on the prompt, the options and
// i) makes the merged call return exactly what separate calls would.

type batchKey struct {
	o        SampleOptions
	logprobs bool
}

type engineOut struct {
	texts [][]string
	probs [][]float64
	err   error
}

type waiter struct {
	prompts []string
	done    chan engineOut
}

type group struct {
	waiters []*waiter
	prompts int
}

type batcher struct {
	h      *Handler
	mu     sync.Mutex
	groups map[batchKey]*group
}

func newBatcher(h *Handler) *batcher { return &batcher{h: h, groups: map[batchKey]*group{}} }

// call returns the engine's answer for prompts, merged with other requests of
// the same key that arrive within the window.
func (b *batcher) call(ctx context.Context, prompts []string, o SampleOptions, logprobs bool) ([][]string, [][]float64, error) {
	if b.h.opts.BatchWindow <= 0 || len(prompts) >= b.h.opts.MaxBatchPrompts {
		out := b.h.engineCall(ctx, prompts, o, logprobs)
		return out.texts, out.probs, out.err
	}
	k := batchKey{o, logprobs}
	w := &waiter{prompts: prompts, done: make(chan engineOut, 1)}
	b.mu.Lock()
	g := b.groups[k]
	if g == nil {
		g = &group{}
		b.groups[k] = g
		time.AfterFunc(b.h.opts.BatchWindow, func() { b.flush(k, g) })
	}
	g.waiters = append(g.waiters, w)
	g.prompts += len(prompts)
	full := g.prompts >= b.h.opts.MaxBatchPrompts
	b.mu.Unlock()
	if full {
		go b.flush(k, g)
	}
	select {
	case out := <-w.done:
		return out.texts, out.probs, out.err
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// flush runs one group once, whichever of the timer and the size limit
// comes first.
func (b *batcher) flush(k batchKey, g *group) {
	b.mu.Lock()
	if b.groups[k] != g {
		b.mu.Unlock()
		return // already flushed
	}
	delete(b.groups, k)
	b.mu.Unlock()

	var all []string
	for _, w := range g.waiters {
		all = append(all, w.prompts...)
	}
	// The merged call serves several clients, so no one client's
	// cancellation may stop it.
	out := b.h.engineCall(context.Background(), all, k.o, k.logprobs)
	at := 0
	for _, w := range g.waiters {
		n := len(w.prompts)
		part := engineOut{err: out.err}
		if out.err == nil {
			part.texts = out.texts[at : at+n]
			if out.probs != nil {
				part.probs = out.probs[at : at+n]
			}
		}
		at += n
		w.done <- part
	}
}

// engineCall runs the engine under the concurrency bound and checks the
// shape of what it returns.
func (h *Handler) engineCall(ctx context.Context, prompts []string, o SampleOptions, logprobs bool) engineOut {
	select {
	case h.sem <- struct{}{}:
	case <-ctx.Done():
		return engineOut{err: ctx.Err()}
	}
	defer func() { <-h.sem }()
	h.engineCalls.Add(1)
	texts, err := h.eng.Generate(ctx, prompts, o)
	if err != nil {
		return engineOut{err: fmt.Errorf("generate: %w", err)}
	}
	if len(texts) != len(prompts) {
		return engineOut{err: fmt.Errorf("engine returned %d results for %d prompts", len(texts), len(prompts))}
	}
	for p := range texts {
		if len(texts[p]) != o.N {
			return engineOut{err: fmt.Errorf("engine returned %d samples, want %d", len(texts[p]), o.N)}
		}
	}
	var probs [][]float64
	if logprobs {
		if probs, err = h.eng.ScoreProbs(ctx, prompts); err != nil {
			return engineOut{err: fmt.Errorf("score probs: %w", err)}
		}
		if len(probs) != len(prompts) {
			return engineOut{err: fmt.Errorf("engine returned %d score distributions for %d prompts", len(probs), len(prompts))}
		}
	}
	return engineOut{texts: texts, probs: probs}
}
