package progress

import (
	"strings"
	"testing"
	"time"
)

var runStages = []Stage{
	{Name: "generate", Unit: "prompts", In: []string{"generate/prompts_read"}, Done: []string{"generate/pairs", "generate/prompts_dropped_or_dead"}},
	{Name: "gradients", Unit: "pairs", In: []string{"gradients/pairs_in"}, Done: []string{"gradients/sketches", "gradients/dead"}, After: "generate"},
}

func TestFormat(t *testing.T) {
	cases := []struct {
		name      string
		el, dt    time.Duration
		cur, prev map[string]int64
		want      []string // substrings, in order
		not       []string
	}{
		{name: "start: every counter of a stage shows, at 0",
			el: time.Second, dt: time.Second, cur: map[string]int64{},
			want: []string{"[   1.0s] generate 0/0 prompts", "generate/pairs=0", "generate/prompts_read=0",
				"| gradients 0/0 pairs", "gradients/dead=0", "gradients/sketches=0"}},
		{name: "current rate and ETA from the last interval, not since start",
			el: 100 * time.Second, dt: 2 * time.Second,
			cur:  map[string]int64{"generate/prompts_read": 100, "generate/pairs": 30, "generate/prompts_dropped_or_dead": 10},
			prev: map[string]int64{"generate/prompts_read": 100, "generate/pairs": 25, "generate/prompts_dropped_or_dead": 9},
			want: []string{"generate 40/100 prompts 40% 3.0/s ETA 20s:"}},
		{name: "no progress in the interval: ETA unknown",
			el: 10 * time.Second, dt: 2 * time.Second,
			cur:  map[string]int64{"generate/prompts_read": 10, "generate/pairs": 3},
			prev: map[string]int64{"generate/prompts_read": 10, "generate/pairs": 3},
			want: []string{"generate 3/10 prompts 30% 0.0/s ETA ?"}},
		{name: "downstream total is not final while upstream runs",
			el: 10 * time.Second, dt: time.Second,
			cur:  map[string]int64{"generate/prompts_read": 10, "generate/pairs": 3, "gradients/pairs_in": 3, "gradients/sketches": 1},
			prev: map[string]int64{},
			want: []string{"generate 3/10 prompts 30%", "gradients 1/3 pairs 1.0/s (total not known yet)"},
			not:  []string{"33%"}},
		{name: "upstream complete: downstream percentage and ETA",
			el: 60 * time.Second, dt: 4 * time.Second,
			cur:  map[string]int64{"generate/prompts_read": 10, "generate/pairs": 6, "generate/prompts_dropped_or_dead": 4, "gradients/pairs_in": 6, "gradients/sketches": 2},
			prev: map[string]int64{"generate/prompts_read": 10, "generate/pairs": 6, "generate/prompts_dropped_or_dead": 4, "gradients/pairs_in": 6, "gradients/sketches": 1},
			want: []string{"generate 10/10 prompts 100% done", "gradients 2/6 pairs 33% 0.2/s ETA 16s"}},
		{name: "long ETA in minutes; counters of no stage at the end",
			el: time.Second, dt: time.Second,
			cur:  map[string]int64{"generate/prompts_read": 1000, "generate/pairs": 1, "select/kept": 4},
			prev: map[string]int64{},
			want: []string{"1.0/s ETA 16m39s", "select/kept=4"}},
	}
	for _, c := range cases {
		got := Format(c.el, c.dt, runStages, c.cur, c.prev)
		rest := got
		for _, w := range c.want {
			i := strings.Index(rest, w)
			if i < 0 {
				t.Errorf("%s:\n got %q\nlacks %q (in order)", c.name, got, w)
				break
			}
			rest = rest[i+len(w):]
		}
		for _, w := range c.not {
			if strings.Contains(got, w) {
				t.Errorf("%s: %q contains %q", c.name, got, w)
			}
		}
	}
}

func TestETA(t *testing.T) {
	for sec, want := range map[float64]string{0.2: "1s", 59: "59s", 61: "1m01s", 3725: "1h02m", 1e7: ">99h"} {
		if got := eta(sec); got != want {
			t.Errorf("eta(%v) = %q, want %q", sec, got, want)
		}
	}
}
