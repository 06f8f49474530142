// Package markov is a small seeded character-level Markov language model
// that implements serve.Engine. It is not a stand-in returning canned text:
// it learns next-character statistics from a corpus, samples with
// temperature and top-p, and reports honest next-token probabilities for the
// score digits. Tests and the benchmark use it to exercise serve and the
// self-rewarding stage end to end without a neural model; it is also cheap
// enough that HTTP and Beam overheads dominate, which is what the benchmark
// wants to measure.
package markov

import (
	"context"
	_ "embed"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/congrad-beam/congrad/serve"
)

//go:embed corpus.txt
var defaultCorpus string

// end marks the end of a training line; sampling it ends a generation.
const end = '\u0003'

// Model is an order-K character model with interpolated back-off.
// Immutable after New, so safe for concurrent use.
type Model struct {
	order  int
	counts []map[string]map[rune]int // counts[k][context of k runes][next]
	totals []map[string]int
	vocab  []rune // sorted, includes end
}

// New trains an order-k model on corpus; an empty corpus selects the built-in
// multilingual one (short answers and judge verdicts ending in "Score: N").
func New(corpus string, order int) *Model {
	if corpus == "" {
		corpus = defaultCorpus
	}
	if order < 1 {
		order = 4
	}
	m := &Model{order: order}
	for k := 0; k <= order; k++ {
		m.counts = append(m.counts, map[string]map[rune]int{})
		m.totals = append(m.totals, map[string]int{})
	}
	seen := map[rune]bool{end: true}
	for _, line := range strings.Split(corpus, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		rs := append([]rune(line), end)
		for i, r := range rs {
			seen[r] = true
			for k := 0; k <= order && k <= i; k++ {
				ctx := string(rs[i-k : i])
				if m.counts[k][ctx] == nil {
					m.counts[k][ctx] = map[rune]int{}
				}
				m.counts[k][ctx][r]++
				m.totals[k][ctx]++
			}
		}
	}
	for r := range seen {
		m.vocab = append(m.vocab, r)
	}
	sort.Slice(m.vocab, func(i, j int) bool { return m.vocab[i] < m.vocab[j] })
	return m
}

// dist is the next-rune distribution after ctx (aligned with m.vocab):
// add-one at order 0, then each longer context interpolates with the shorter
// one in proportion to how often it was seen (Witten–Bell style).
func (m *Model) dist(ctx []rune) []float64 {
	p := make([]float64, len(m.vocab))
	for i := range p {
		n := m.counts[0][""][m.vocab[i]]
		p[i] = float64(n+1) / float64(m.totals[0][""]+len(m.vocab))
	}
	for k := 1; k <= m.order && k <= len(ctx); k++ {
		c := string(ctx[len(ctx)-k:])
		tot := m.totals[k][c]
		if tot == 0 {
			break
		}
		distinct := float64(len(m.counts[k][c]))
		lambda := float64(tot) / (float64(tot) + distinct)
		for i, r := range m.vocab {
			p[i] = lambda*float64(m.counts[k][c][r])/float64(tot) + (1-lambda)*p[i]
		}
	}
	return p
}

func (m *Model) index(r rune) int {
	i := sort.Search(len(m.vocab), func(i int) bool { return m.vocab[i] >= r })
	if i < len(m.vocab) && m.vocab[i] == r {
		return i
	}
	return -1
}

// sample draws one index from p with temperature and nucleus (top-p) cut.
func sample(p []float64, temp, topP float64, rng *rand.Rand) int {
	if temp <= 0 {
		best := 0
		for i := range p {
			if p[i] > p[best] {
				best = i
			}
		}
		return best
	}
	idx := make([]int, len(p))
	w := make([]float64, len(p))
	var sum float64
	for i := range p {
		idx[i] = i
		w[i] = math.Pow(p[i], 1/temp)
		sum += w[i]
	}
	sort.SliceStable(idx, func(a, b int) bool { return w[idx[a]] > w[idx[b]] })
	var kept float64
	n := 0
	for n < len(idx) {
		kept += w[idx[n]] / sum
		n++
		if kept >= topP {
			break
		}
	}
	x := rng.Float64() * kept * sum
	for _, i := range idx[:n] {
		x -= w[i]
		if x < 0 {
			return i
		}
	}
	return idx[n-1]
}

func seedFor(seed int64, prompt string, i int) (uint64, uint64) {
	h := fnv.New64a()
	h.Write([]byte(prompt))
	return uint64(seed) + uint64(i)*0x9E3779B97F4A7C15, h.Sum64()
}

// Generate implements serve.Engine. Sample i of a prompt is seeded from
// (o.Seed+i, prompt), so a request for n samples and n requests for one
// sample with seeds seed, seed+1, ... give the same texts.
func (m *Model) Generate(ctx context.Context, prompts []string, o serve.SampleOptions) ([][]string, error) {
	out := make([][]string, len(prompts))
	for p, prompt := range prompts {
		for i := 0; i < o.N; i++ {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			a, b := seedFor(o.Seed+int64(i), prompt, 0)
			rng := rand.New(rand.NewPCG(a, b))
			hist := []rune(prompt)
			if len(hist) > m.order {
				hist = hist[len(hist)-m.order:]
			}
			var gen []rune
			for len(gen) < o.MaxTokens {
				r := m.vocab[sample(m.dist(hist), o.Temperature, o.TopP, rng)]
				if r == end {
					break
				}
				gen = append(gen, r)
				hist = append(hist, r)
				if len(hist) > m.order {
					hist = hist[1:]
				}
			}
			out[p] = append(out[p], string(gen))
		}
	}
	return out, nil
}

// ScoreProbs implements serve.Engine: P(next rune = '0'..'5' | prompt).
func (m *Model) ScoreProbs(ctx context.Context, prompts []string) ([][]float64, error) {
	out := make([][]float64, len(prompts))
	for p, prompt := range prompts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d := m.dist([]rune(prompt))
		out[p] = make([]float64, 6)
		for k := 0; k < 6; k++ {
			if i := m.index(rune('0' + k)); i >= 0 {
				out[p][k] = d[i]
			}
		}
	}
	return out, nil
}
