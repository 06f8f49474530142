// Package generate samples continuations from a gpu/model transformer
// (seeded temperature / top-p sampling, stop tokens and strings, batched with
// fixed shapes) and reads the judge's score-token probabilities.
//
// Decoding uses a KV cache with fixed shapes: a prefill graph over the padded
// rows and a one-token step graph, each compiled once per (rows, padded
// length). Rows are slots: when a sample finishes, the next waiting sample
// takes its slot and all rows are re-prefilled once.
package generate

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"strings"
	"sync"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/congrad-beam/congrad/gpu/model"
)

// SampleOptions mirror an OpenAI-style sampling request.
type SampleOptions struct {
	N           int     // samples per prompt (default 1)
	Temperature float64 // 0 = greedy
	TopP        float64 // nucleus mass in (0, 1]; 0 means 1
	MaxTokens   int     // new tokens per sample (default 128)
	Seed        int64
	Stop        []string // generation stops before the first occurrence of any of these
	StopTokens  []int    // extra stop token ids (every EOS id of the model always stops: Model.StopIDs)
}

// ErrOptions is wrapped by invalid sampling options.
var ErrOptions = errors.New("generate: invalid options")

// Generator runs sampling for one model. Safe for concurrent use.
type Generator struct {
	m    *model.Model
	rows int // sequences per device call

	once sync.Once
	exec *Exec
	err  error

	kvOnce sync.Once
	kvx    *kvExecs
	kvErr  error

	noCache bool // tests: recompute the padded prefix every step
}

// New returns a Generator that runs rows sequences per device call (default 8).
func New(m *model.Model, rows int) (*Generator, error) {
	if m == nil || m.Config == nil {
		return nil, fmt.Errorf("%w: nil model", ErrOptions)
	}
	if m.Backend == nil {
		b, err := model.DefaultBackend()
		if err != nil {
			return nil, fmt.Errorf("generate: %w", err)
		}
		m.Backend = b
	}
	if rows <= 0 {
		rows = 8
	}
	return &Generator{m: m, rows: rows}, nil
}

// nextLogits compiles (once) the graph: tokens [R,T] int32, last [R,2] int32
// (row, index of the last real token) -> logits [R,V] at that position.
func (g *Generator) nextLogits() (*Exec, error) {
	g.once.Do(func() {
		cfg := g.m.Config
		g.exec, g.err = NewExec(g.m.Backend, func(in []*Node) *Node {
			w := model.BindWeights(cfg, in[2:])
			h := model.Hidden(cfg, w, nil, in[0])
			last := Gather(h, in[1]) // [R, H]: the LM head runs on one position per row
			return model.Logits(cfg, w, last)
		})
		if g.exec != nil {
			g.exec.SetMaxCache(64)
		}
	})
	return g.exec, g.err
}

// logitsAt returns the next-token logits for each sequence (each at most T long).
func (g *Generator) logitsAt(seqs [][]int, t int) ([][]float32, error) {
	exec, err := g.nextLogits()
	if err != nil {
		return nil, fmt.Errorf("generate: build graph: %w", err)
	}
	r := g.rows
	pad := int32(g.m.Tok.PAD())
	toks := make([]int32, r*t)
	for i := range toks {
		toks[i] = pad
	}
	last := make([]int32, 2*r)
	for i, s := range seqs {
		for p, id := range s {
			toks[i*t+p] = int32(id)
		}
		last[2*i], last[2*i+1] = int32(i), int32(len(s)-1)
	}
	for i := len(seqs); i < r; i++ {
		last[2*i] = int32(i)
	}
	ws, err := g.m.DeviceWeights(dtypes.Float32)
	if err != nil {
		return nil, err
	}
	args := []any{tensors.FromFlatDataAndDimensions(toks, r, t), tensors.FromFlatDataAndDimensions(last, r, 2)}
	for _, w := range ws {
		args = append(args, w)
	}
	outs, err := safeExec(exec, args)
	if err != nil {
		return nil, fmt.Errorf("generate: %d rows of length %d: %w", len(seqs), t, err)
	}
	flat := tensors.MustCopyFlatData[float32](outs[0])
	outs[0].FinalizeAll()
	v := g.m.Config.VocabSize
	res := make([][]float32, len(seqs))
	for i := range seqs {
		res[i] = flat[i*v : (i+1)*v]
	}
	return res, nil
}

func safeExec(e *Exec, args []any) (outs []*tensors.Tensor, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("device call panicked: %v", r)
		}
	}()
	return e.Exec(args...)
}

// padLen is the smallest power of two >= n (min 16), capped at the model's positions.
func (g *Generator) padLen(n int) int {
	t := 16
	for t < n {
		t *= 2
	}
	return min(t, g.m.Config.MaxPositionEmbeddings)
}

// encodePrompt is [BOS] prompt. When the prompt plus room to generate
// exceed the model's positions, the prompt keeps BOS and its most recent
// tokens, leaving min(room, positions/2) positions to generate into; a
// sample that reaches the last position stops there (as max_tokens would).
func (g *Generator) encodePrompt(p string, room int) ([]int, error) {
	ids := g.m.Tok.Encode(p)
	if bos := g.m.Tok.BOS(); bos >= 0 {
		ids = append([]int{bos}, ids...)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: empty prompt and the tokenizer has no BOS", ErrOptions)
	}
	maxPos := g.m.Config.MaxPositionEmbeddings
	limit := maxPos - min(room, maxPos/2)
	if len(ids) > limit {
		ids = append(ids[:1:1], ids[len(ids)-limit+1:]...)
	}
	for _, id := range ids {
		if id < 0 || id >= g.m.Config.VocabSize {
			return nil, fmt.Errorf("generate: token id %d outside vocabulary", id)
		}
	}
	return ids, nil
}

// sampleRNG seeds sample i of a prompt from (seed, prompt text, i) only, so a
// sample does not depend on the batch it ran in.
func sampleRNG(seed int64, prompt string, i int) *model.RNG {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%d/", seed, i)
	h.Write([]byte(prompt))
	return model.NewRNG(h.Sum64(), "sample")
}

// pick draws a token from logits with temperature and top-p.
func pick(logits []float32, temp, topP float64, r *model.RNG) int {
	if temp <= 0 {
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		return best
	}
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v))
	}
	idx := make([]int, len(logits))
	p := make([]float64, len(logits))
	sum := 0.0
	for i, v := range logits {
		idx[i] = i
		p[i] = math.Exp((float64(v) - mx) / temp)
		sum += p[i]
	}
	// Sort by probability, ties by id, so the draw is reproducible.
	sort.SliceStable(idx, func(a, b int) bool { return p[idx[a]] > p[idx[b]] })
	if topP <= 0 || topP > 1 {
		topP = 1
	}
	keep, mass := 0, 0.0
	for keep < len(idx) {
		mass += p[idx[keep]] / sum
		keep++
		if mass >= topP {
			break
		}
	}
	u := r.Float64() * mass * sum
	for _, i := range idx[:keep] {
		u -= p[i]
		if u < 0 {
			return i
		}
	}
	return idx[keep-1]
}

type job struct {
	prompt, sample int
	ids            []int // prompt then generated tokens
	start          int   // len of the prompt part
	rng            *model.RNG
}

// Generate returns o.N samples per prompt ([prompt][sample]). Rows that
// finish are refilled with waiting samples, so the device batch stays full.
func (g *Generator) Generate(ctx context.Context, prompts []string, o SampleOptions) ([][]string, error) {
	if o.N == 0 {
		o.N = 1
	}
	if o.MaxTokens == 0 {
		o.MaxTokens = 128
	}
	if o.N < 0 || o.MaxTokens < 0 || o.Temperature < 0 || o.TopP < 0 || o.TopP > 1 {
		return nil, fmt.Errorf("%w: %+v", ErrOptions, o)
	}
	stop := map[int]bool{}
	for _, id := range g.m.StopIDs() {
		stop[id] = true
	}
	for _, s := range o.StopTokens {
		stop[s] = true
	}
	out := make([][]string, len(prompts))
	var queue []*job
	longest := 0
	for p, text := range prompts {
		out[p] = make([]string, o.N)
		ids, err := g.encodePrompt(text, o.MaxTokens)
		if err != nil {
			return nil, fmt.Errorf("prompt %d: %w", p, err)
		}
		longest = max(longest, len(ids))
		for i := 0; i < o.N; i++ {
			queue = append(queue, &job{prompt: p, sample: i, ids: append([]int{}, ids...), start: len(ids), rng: sampleRNG(o.Seed, text, i)})
		}
	}
	t := g.padLen(longest + o.MaxTokens)
	finish := func(j *job) {
		out[j.prompt][j.sample] = cutStop(g.m.Tok.Decode(j.ids[j.start:]), o.Stop)
	}
	if o.MaxTokens == 0 {
		for _, j := range queue {
			finish(j)
		}
		return out, nil
	}
	slots := make([]*job, g.rows)
	dec := &decoder{g: g, t: t}
	defer dec.free()
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		refilled := false
		for i := range slots {
			if slots[i] == nil && len(queue) > 0 {
				slots[i], queue = queue[0], queue[1:]
				refilled = true
			}
		}
		busy := false
		for _, j := range slots {
			busy = busy || j != nil
		}
		if !busy {
			return out, nil
		}
		var logits [][]float32
		var err error
		switch {
		case g.noCache:
			seqs := make([][]int, len(slots))
			for i, j := range slots {
				seqs[i] = []int{g.m.Tok.PAD()}
				if j != nil {
					seqs[i] = j.ids
				}
			}
			logits, err = g.logitsAt(seqs, t)
		case refilled || dec.caches == nil:
			seqs := make([][]int, len(slots))
			for i, j := range slots {
				if j != nil {
					seqs[i] = j.ids
				}
			}
			logits, err = dec.prefill(seqs)
		default:
			tok, pos := make([]int32, len(slots)), make([]int32, len(slots))
			for i, j := range slots {
				tok[i] = int32(g.m.Tok.PAD())
				if j != nil {
					tok[i], pos[i] = int32(j.ids[len(j.ids)-1]), int32(len(j.ids)-1)
				}
			}
			logits, err = dec.step(tok, pos)
		}
		if err != nil {
			return nil, err
		}
		for i, j := range slots {
			if j == nil {
				continue
			}
			tok := pick(logits[i], o.Temperature, o.TopP, j.rng)
			done := stop[tok]
			if !done {
				j.ids = append(j.ids, tok)
			}
			if done || len(j.ids)-j.start >= o.MaxTokens || len(j.ids) >= t || hasStop(g.m.Tok.Decode(j.ids[j.start:]), o.Stop) {
				finish(j)
				slots[i] = nil
			}
		}
	}
}

func hasStop(s string, stops []string) bool {
	for _, st := range stops {
		if st != "" && strings.Contains(s, st) {
			return true
		}
	}
	return false
}

func cutStop(s string, stops []string) string {
	for _, st := range stops {
		if i := strings.Index(s, st); st != "" && i >= 0 {
			s = s[:i]
		}
	}
	return s
}

// ScoreTokens are the judge's score tokens, in order.
var ScoreTokens = []string{"0", "1", "2", "3", "4", "5"}

// ScoreProbs returns, per prompt, the probabilities (softmax over the whole
// vocabulary, not renormalised) that the next token is "0".."5". A score
// token that the tokenizer does not encode as one token is an error.
func (g *Generator) ScoreProbs(ctx context.Context, prompts []string) ([][]float64, error) {
	ids := make([]int, len(ScoreTokens))
	for k, s := range ScoreTokens {
		enc := g.m.Tok.Encode(s)
		if len(enc) != 1 {
			return nil, fmt.Errorf("generate: score token %q is %d tokens, want 1", s, len(enc))
		}
		ids[k] = enc[0]
	}
	out := make([][]float64, len(prompts))
	for s := 0; s < len(prompts); s += g.rows {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		end := min(s+g.rows, len(prompts))
		seqs := make([][]int, 0, end-s)
		longest := 0
		for p := s; p < end; p++ {
			e, err := g.encodePrompt(prompts[p], 1)
			if err != nil {
				return nil, fmt.Errorf("prompt %d: %w", p, err)
			}
			seqs = append(seqs, e)
			longest = max(longest, len(e))
		}
		logits, err := g.logitsAt(seqs, g.padLen(longest))
		if err != nil {
			return nil, err
		}
		for i, l := range logits {
			mx := math.Inf(-1)
			for _, v := range l {
				mx = math.Max(mx, float64(v))
			}
			z := 0.0
			for _, v := range l {
				z += math.Exp(float64(v) - mx)
			}
			probs := make([]float64, len(ids))
			for k, id := range ids {
				probs[k] = math.Exp(float64(l[id])-mx) / z
			}
			out[s+i] = probs
		}
	}
	return out, nil
}
