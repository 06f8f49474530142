package experiment

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func TestTopN(t *testing.T) {
	for _, c := range []struct {
		scores []float64
		n      int
		want   []int
	}{
		{[]float64{0.1, 0.9, 0.5, 0.7}, 2, []int{1, 3}},
		{[]float64{1, 1, 1}, 2, []int{0, 1}}, // ties: lower index first
		{[]float64{0.3, -1}, 5, []int{0, 1}},
		{[]float64{0.3, -1}, 0, []int{}},
	} {
		if got := topN(c.scores, c.n); !slices.Equal(got, c.want) {
			t.Errorf("topN(%v, %d) = %v, want %v", c.scores, c.n, got, c.want)
		}
	}
}

func TestBalancedSubset(t *testing.T) {
	langs := append(append(slices.Repeat([]string{"h"}, 300), slices.Repeat([]string{"l"}, 40)...), slices.Repeat([]string{"c"}, 300)...)
	for _, n := range []int{0, 30, 120, 400, 640, 1000} {
		idx := balancedSubset(langs, n, 7)
		if len(idx) != min(n, len(langs)) || !slices.IsSorted(idx) {
			t.Fatalf("n=%d: %d indices (sorted %v)", n, len(idx), slices.IsSorted(idx))
		}
		by := map[string]int{}
		for _, i := range idx {
			by[langs[i]]++
		}
		// Water-filling: the small language gives all it has before the
		// others get more than it, and the others split the rest evenly.
		if n >= 120 && by["l"] != min(40, n/3) {
			t.Errorf("n=%d: l keeps %d", n, by["l"])
		}
		if d := by["h"] - by["c"]; d < -1 || d > 1 {
			t.Errorf("n=%d: h %d vs c %d", n, by["h"], by["c"])
		}
		if !slices.Equal(idx, balancedSubset(langs, n, 7)) {
			t.Errorf("n=%d: not deterministic", n)
		}
	}
}

func TestTInterval(t *testing.T) {
	// n = 5, mean 3, s = sqrt(2.5): t_{0.975,4} = 2.7764.
	m, lo, hi := tInterval([]float64{1, 2, 3, 4, 5}, 0.95)
	h := 2.7764451 * math.Sqrt(2.5) / math.Sqrt(5)
	if m != 3 || math.Abs(lo-(3-h)) > 1e-5 || math.Abs(hi-(3+h)) > 1e-5 {
		t.Errorf("got %v [%v, %v], want 3 ± %v", m, lo, hi, h)
	}
	if _, lo, _ := tInterval([]float64{1}, 0.95); !math.IsNaN(lo) {
		t.Errorf("one value: lo %v, want NaN", lo)
	}
	if got := ciCell([]float64{0.1, 0.12, 0.11}); !strings.HasPrefix(got, "**") {
		t.Errorf("interval excluding 0 not marked: %s", got)
	}
	if got := ciCell([]float64{-0.1, 0.12, 0.01}); strings.HasPrefix(got, "**") {
		t.Errorf("interval containing 0 marked: %s", got)
	}
}

func TestDevPairsAndJudgeMargin(t *testing.T) {
	tk := DefaultTask()
	dev := tk.DevPairs(1, 20, "high")
	if len(dev) != 20 {
		t.Fatalf("%d dev pairs", len(dev))
	}
	w := tk.TrueWeights()
	for _, d := range dev {
		if !strings.HasPrefix(d.Lang, "h") || !d.LabelCorrect || d.JudgeMargin <= 0 {
			t.Errorf("dev pair %+v", d)
		}
		li := slices.IndexFunc(tk.Langs, func(l Lang) bool { return l.Code == d.Lang })
		if q := quality(w, decode(tk, li, d.Chosen)) - quality(w, decode(tk, li, d.Rejected)); math.Abs(q-d.JudgeMargin) > 1e-9 {
			t.Errorf("dev pair %s: margin %v, quality gap %v", d.ID, d.JudgeMargin, q)
		}
	}
	train := map[string]bool{}
	for _, ex := range tk.TrainPairs(1) {
		train[ex.Prompt+ex.Chosen+ex.Rejected] = true
		li := slices.IndexFunc(tk.Langs, func(l Lang) bool { return l.Code == ex.Lang })
		wj := w
		if tk.Langs[li].Conflict {
			wj = tk.ConflictWeights()
		}
		// The margin is the judge's gap, whichever way the label went.
		if q := math.Abs(quality(wj, decode(tk, li, ex.Chosen)) - quality(wj, decode(tk, li, ex.Rejected))); math.Abs(q-ex.JudgeMargin) > 1e-9 {
			t.Fatalf("%s: margin %v, judge's gap %v", ex.ID, ex.JudgeMargin, q)
		}
	}
	overlap := 0
	for _, d := range dev {
		if train[d.Prompt+d.Chosen+d.Rejected] {
			overlap++
		}
	}
	if overlap > 1 {
		t.Errorf("%d dev pairs repeat training pairs", overlap)
	}
	if len(tk.DevPairs(1, 5, "nope")) != 0 {
		t.Error("unknown kind: want no dev pairs")
	}
}

func decode(tk Task, li int, s string) []int {
	out := make([]int, len(s))
	for i := range s {
		out[i] = int(s[i]) - 33 - li*tk.Symbols
	}
	return out
}

func TestTrainedArms(t *testing.T) {
	c := DefaultConfig()
	if got, err := trainedArms(c); err != nil || !slices.Equal(got, Arms) {
		t.Errorf("default: %v %v", got, err)
	}
	c.Arms = []string{"gate", "loss", "random"}
	got, err := trainedArms(c)
	if want := []string{ArmAll, ArmRandom, ArmLoss, ArmGate}; err != nil || !slices.Equal(got, want) {
		t.Errorf("got %v %v, want %v (table order, all pairs brought in by loss)", got, err, want)
	}
	c.Arms = []string{"nope"}
	if _, err := trainedArms(c); err == nil {
		t.Error("unknown arm: want an error")
	}
	if len(ArmKeys) != len(Arms) {
		t.Errorf("%d keys for %d arms", len(ArmKeys), len(Arms))
	}
}
