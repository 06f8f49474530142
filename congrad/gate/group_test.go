package gate

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/congrad/vec"
)

func TestGroupsProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	for trial := 0; trial < 200; trial++ {
		n := rng.IntN(120)
		size := 1 + rng.IntN(20)
		keys := make([]string, n)
		for i := range keys {
			keys[i] = string(rune('a' + rng.IntN(4)))
		}
		g, err := Groups(keys, size, uint64(trial))
		if err != nil {
			t.Fatal(err)
		}
		members := map[int][]int{}
		for i, gi := range g {
			members[gi] = append(members[gi], i)
		}
		perKey := map[string][]int{} // group sizes per key
		for gi, m := range members {
			k := keys[m[0]]
			for _, i := range m {
				if keys[i] != k {
					t.Fatalf("trial %d: group %d mixes keys %q and %q", trial, gi, k, keys[i])
				}
			}
			if len(m) > size {
				t.Fatalf("trial %d: group %d has %d > %d members", trial, gi, len(m), size)
			}
			perKey[k] = append(perKey[k], len(m))
		}
		for k, sizes := range perKey {
			nk := 0
			for _, s := range sizes {
				nk += s
			}
			if want := (nk + size - 1) / size; len(sizes) != want {
				t.Fatalf("trial %d key %s: %d groups for %d items of size %d, want %d", trial, k, len(sizes), nk, size, want)
			}
			if slices.Max(sizes)-slices.Min(sizes) > 1 {
				t.Fatalf("trial %d key %s: unbalanced sizes %v", trial, k, sizes)
			}
		}
		again, _ := Groups(keys, size, uint64(trial))
		if !slices.Equal(g, again) {
			t.Fatalf("trial %d: not deterministic", trial)
		}
	}
	if _, err := Groups([]string{"a"}, 0, 1); !errors.Is(err, ErrOptions) {
		t.Errorf("size 0: %v", err)
	}
}

func TestGroupScores(t *testing.T) {
	vs := cluster(40, axis(16, 0, 0.2), 1, 8)
	target := axis(16, 0, 1)
	// Size 1: every pair is its own group, the score is its own cosine.
	single := make([]int, len(vs))
	for i := range single {
		single[i] = i
	}
	s1, err := GroupScores(vs, single, target)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vs {
		if c, _ := vec.Cosine(v, target); math.Abs(c-s1[i]) > 1e-6 {
			t.Fatalf("pair %d: group-of-one score %v, own cosine %v", i, s1[i], c)
		}
	}
	keys := slices.Repeat([]string{"x"}, len(vs))
	g, _ := Groups(keys, 8, 1)
	s8, err := GroupScores(vs, g, target)
	if err != nil {
		t.Fatal(err)
	}
	members := map[int][][]float32{}
	for i, gi := range g {
		members[gi] = append(members[gi], vs[i])
	}
	for i, gi := range g {
		if want := meanCos(t, members[gi], target); math.Abs(s8[i]-want) > 1e-6 {
			t.Fatalf("pair %d: %v, want cos(group mean) %v", i, s8[i], want)
		}
	}
	// Averaging cancels the pair-specific noise: more group scores than
	// pair scores have the sign of the shared direction.
	pos := func(s []float64) int {
		n := 0
		for _, x := range s {
			if x > 0 {
				n++
			}
		}
		return n
	}
	if !(pos(s8) > pos(s1)) {
		t.Errorf("groups of 8: %d positive, single pairs %d", pos(s8), pos(s1))
	}
	if _, err := GroupScores(vs, g[:3], target); !errors.Is(err, ErrOptions) {
		t.Errorf("length mismatch: %v", err)
	}
	if _, err := GroupScores(vs, g, make([]float32, 16)); !errors.Is(err, vec.ErrZero) {
		t.Errorf("zero target: %v", err)
	}
}

func TestGroupReasons(t *testing.T) {
	vs := []keep.Verdict{{Reason: keep.ReasonAboveTau}, {Reason: keep.ReasonNonFinite}}
	got := GroupReasons(vs)
	if got[0].Reason != ReasonPrefixGroup+keep.ReasonAboveTau || got[1].Reason != keep.ReasonNonFinite || vs[0].Reason != keep.ReasonAboveTau {
		t.Errorf("got %+v (input now %+v)", got, vs)
	}
}

// HashGroups: ⌈n_k/size⌉ groups per key, indices disjoint across keys,
// deterministic, and the seed changes the assignment.
func TestHashGroups(t *testing.T) {
	var keys, ids []string
	for i := 0; i < 100; i++ {
		keys = append(keys, []string{"b", "a"}[i%2])
		ids = append(ids, fmt.Sprintf("p%03d", i))
	}
	g1, err := HashGroups(keys, ids, 16, 3)
	if err != nil {
		t.Fatal(err)
	}
	g2, _ := HashGroups(keys, ids, 16, 3)
	g3, _ := HashGroups(keys, ids, 16, 4)
	per := map[string]map[int]int{"a": {}, "b": {}}
	same := true
	for i := range keys {
		if g1[i] != g2[i] {
			t.Fatal("not deterministic")
		}
		same = same && g1[i] == g3[i]
		per[keys[i]][g1[i]]++
	}
	if same {
		t.Error("the seed does not change the groups")
	}
	// 50 items per key, size 16: 4 groups each; "a" gets 0..3, "b" 4..7.
	for k, lo := range map[string]int{"a": 0, "b": 4} {
		for g := range per[k] {
			if g < lo || g >= lo+4 {
				t.Errorf("key %s: group %d outside [%d, %d)", k, g, lo, lo+4)
			}
		}
	}
	if _, err := HashGroups(keys, ids, 0, 1); err == nil {
		t.Error("size 0 accepted")
	}
}
