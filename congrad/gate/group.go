package gate

import (
	"fmt"
	"math/rand/v2"

	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/congrad/vec"
)

// ReasonPrefixGroup is prepended to the keep rule's reason when the score a
// pair was judged by is its group's score (GroupReasons).
const ReasonPrefixGroup = "group score: "

// Groups assigns items to groups within each key (a language, or a prompt
// cluster inside a language): the items of one key are shuffled with a
// seeded permutation and cut into ceil(n/size) groups whose sizes differ by
// at most one, so no group is a lone remainder with a noisy mean. It returns
// a group index per item; groups are numbered key by key in first-seen
// order. Errors: ErrOptions for size < 1.
func Groups(keys []string, size int, seed uint64) ([]int, error) {
	if size < 1 {
		return nil, fmt.Errorf("%w: group size %d", ErrOptions, size)
	}
	var order []string
	members := map[string][]int{}
	for i, k := range keys {
		if _, ok := members[k]; !ok {
			order = append(order, k)
		}
		members[k] = append(members[k], i)
	}
	out := make([]int, len(keys))
	next := 0
	for ki, k := range order {
		idx := members[k]
		rng := rand.New(rand.NewPCG(seed, uint64(ki)+0x67727570)) // "grup"
		rng.Shuffle(len(idx), func(a, b int) { idx[a], idx[b] = idx[b], idx[a] })
		m := (len(idx) + size - 1) / size
		for p, i := range idx {
			out[i] = next + p*m/len(idx) // contiguous blocks of near-equal size
		}
		next += m
	}
	return out, nil
}

// GroupScores scores each group's mean vector against target and gives the
// score to every member: score_i = cos(mean_{j ∈ group(i)} v_j, target).
// Averaging N pair gradients cancels their pair-specific parts (which
// symbols a response holds) and keeps what they share, so the group score
// is less noisy than a single pair's; the price is that the members of a
// group are kept or dropped together. A group whose mean is zero gets
// score 0. Errors: ErrOptions (length mismatch), vec errors.
func GroupScores(vecs [][]float32, group []int, target []float32) ([]float64, error) {
	if len(vecs) != len(group) {
		return nil, fmt.Errorf("%w: %d vectors, %d group indices", ErrOptions, len(vecs), len(group))
	}
	t, err := vec.NewTarget(target)
	if err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	sums := map[int][]float64{}
	for i, v := range vecs {
		if len(v) != len(target) {
			return nil, fmt.Errorf("%w: vector %d has length %d, target %d", vec.ErrDim, i, len(v), len(target))
		}
		s := sums[group[i]]
		if s == nil {
			s = make([]float64, len(v))
			sums[group[i]] = s
		}
		for j, x := range v {
			s[j] += float64(x)
		}
	}
	score := make(map[int]float64, len(sums))
	buf := make([]float32, len(target))
	for g, s := range sums {
		for j, x := range s {
			buf[j] = float32(x)
		}
		if err := vec.CheckFinite(buf); err != nil {
			return nil, fmt.Errorf("group %d: %w", g, err)
		}
		if vec.Norm(buf) == 0 {
			score[g] = 0
			continue
		}
		c, err := t.Cosine(buf)
		if err != nil {
			return nil, fmt.Errorf("group %d: %w", g, err)
		}
		score[g] = c
	}
	out := make([]float64, len(vecs))
	for i := range out {
		out[i] = score[group[i]]
	}
	return out, nil
}

// GroupReasons returns a copy of vs whose reasons say that the score was a
// group score ("group score: score>tau"); non-finite verdicts are left as
// they are.
func GroupReasons(vs []keep.Verdict) []keep.Verdict {
	out := make([]keep.Verdict, len(vs))
	copy(out, vs)
	for i := range out {
		if out[i].Reason != keep.ReasonNonFinite {
			out[i].Reason = ReasonPrefixGroup + out[i].Reason
		}
	}
	return out
}
