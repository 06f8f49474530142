package gate

import (
	"fmt"
	"hash/fnv"
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
	for g, s := range sums {
		c, err := GroupScore(s, t)
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

// GroupScore is the score of one group from the sum of its members'
// vectors: cos(sum, target), 0 for a zero sum (GroupScores' rule; the
// cosine of the sum is the cosine of the mean). The sum is rounded to
// float32 first, as GroupScores does. Errors: vec errors (non-finite sum,
// wrong length).
func GroupScore(sum []float64, t *vec.Target) (float64, error) {
	buf := make([]float32, len(sum))
	for j, x := range sum {
		buf[j] = float32(x)
	}
	if err := vec.CheckFinite(buf); err != nil {
		return 0, err
	}
	if vec.Norm(buf) == 0 {
		return 0, nil
	}
	return t.Cosine(buf)
}

// HashGroup is the group of a pair when groups are assigned by hashing,
// as a distributed pipeline does (no shuffle over a key's items, which
// would need them in one place): FNV-1a of the pair ID, mixed with seed by
// SplitMix64, modulo m, the key's number of groups ⌈n/N⌉. Group sizes
// are then multinomial around N instead of Groups' near-equal sizes.
func HashGroup(seed uint64, pairID string, m int) int {
	if m <= 1 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(pairID))
	return int(splitmix(h.Sum64()^splitmix(seed+0x67727570)) % uint64(m)) // "grup"
}

// HashGroups assigns items to groups by HashGroup within each key: key k
// with n_k items gets ⌈n_k/size⌉ groups. Group indices are numbered key by
// key in sorted key order, so (key, HashGroup) maps to one index. Errors:
// ErrOptions for size < 1 or a length mismatch.
func HashGroups(keys, ids []string, size int, seed uint64) ([]int, error) {
	if size < 1 || len(keys) != len(ids) {
		return nil, fmt.Errorf("%w: group size %d, %d keys, %d ids", ErrOptions, size, len(keys), len(ids))
	}
	n := map[string]int{}
	for _, k := range keys {
		n[k]++
	}
	base := map[string]int{}
	next := 0
	for _, k := range sortedKeys(n) {
		base[k] = next
		next += (n[k] + size - 1) / size
	}
	out := make([]int, len(keys))
	for i, k := range keys {
		out[i] = base[k] + HashGroup(seed, ids[i], (n[k]+size-1)/size)
	}
	return out, nil
}
