// Package progress counts rows per pipeline stage in process-wide counters
// so the CLI can print progress while a pipeline runs. With in-process Prism
// or LOOPBACK workers the SDK harness runs in the submitting process, so the
// counters are live; on remote workers (Dataflow, Flink) they stay at zero
// and the runner's UI shows the Beam metrics instead.
package progress

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
)

var counters sync.Map // name -> *atomic.Int64

func counter(name string) *atomic.Int64 {
	c, _ := counters.LoadOrStore(name, new(atomic.Int64))
	return c.(*atomic.Int64)
}

// Add adds n to the named counter.
func Add(name string, n int64) { counter(name).Add(n) }

// Reset zeroes every counter (between runs in one process).
func Reset() {
	counters.Range(func(k, v any) bool { v.(*atomic.Int64).Store(0); return true })
}

// Snapshot returns the counters, sorted by name.
func Snapshot() [][2]any {
	var out [][2]any
	counters.Range(func(k, v any) bool {
		out = append(out, [2]any{k.(string), v.(*atomic.Int64).Load()})
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i][0].(string) < out[j][0].(string) })
	return out
}

// Tap counts the rows of col under name (and as Beam metric
// congrad.progress/<name>); it does not change col.
func Tap(s beam.Scope, name string, col beam.PCollection) {
	beam.ParDo0(s.Scope("progress."+name), &tapFn{Name: name}, col)
}

type tapFn struct{ Name string }

func (f *tapFn) ProcessElement(ctx context.Context, _ beam.T) {
	Add(f.Name, 1)
	beam.NewCounter("congrad.progress", f.Name).Inc(ctx, 1)
}

// Stage is how one pipeline stage's progress is read from the counters.
type Stage struct {
	Name string   // "generate"; its counters are "<Name>/..."
	Unit string   // what Done counts: "prompts", "pairs"
	In   []string // counters whose sum is the stage's total (rows that entered it)
	Done []string // counters whose sum is the rows that left it
	// After names the stage upstream of this one: until After is complete,
	// In is still growing and no percentage or ETA is shown. Empty: In is
	// known as soon as the stage's input is read.
	After string
}

// Meter formats progress lines with per-stage totals, percentages, current
// rates (since the previous line, not since the start) and ETAs.
type Meter struct {
	Stages []Stage
	start  time.Time
	prevT  time.Time
	prev   map[string]int64
}

// NewMeter starts a meter at start.
func NewMeter(start time.Time, stages ...Stage) *Meter {
	return &Meter{Stages: stages, start: start, prevT: start, prev: map[string]int64{}}
}

// Line formats the counters now and remembers them for the next rates;
// extra is appended as it is (e.g. "backend_retries=3").
func (m *Meter) Line(now time.Time, extra ...string) string {
	cur := map[string]int64{}
	for _, kv := range Snapshot() {
		cur[kv[0].(string)] = kv[1].(int64)
	}
	line := Format(now.Sub(m.start), now.Sub(m.prevT), m.Stages, cur, m.prev)
	m.prev, m.prevT = cur, now
	for _, e := range extra {
		line += " " + e
	}
	return line
}

// Format is one progress line: the elapsed time, then per stage the rows
// done out of the rows in, the percentage, the current rate (rows done
// since prev, dt ago) and the ETA at that rate once the total is final,
// then the stage's counters, each from the start (0 until its first row).
// Counters of no stage follow at the end.
//
//	[  12.0s] generate 30/100 prompts 30% 2.5/s ETA 28s: generate/pairs=20 ...
func Format(elapsed, dt time.Duration, stages []Stage, cur, prev map[string]int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%6.1fs]", elapsed.Seconds())
	sum := func(m map[string]int64, names []string) (n int64) {
		for _, k := range names {
			n += m[k]
		}
		return n
	}
	complete := map[string]bool{}
	shown := map[string]bool{}
	for i, st := range stages {
		if i > 0 {
			b.WriteString(" |")
		}
		in, done := sum(cur, st.In), sum(cur, st.Done)
		final := st.After == "" || complete[st.After]
		complete[st.Name] = final && in > 0 && done >= in
		fmt.Fprintf(&b, " %s %d/%d %s", st.Name, done, in, st.Unit)
		rate := 0.0
		if dt > 0 {
			rate = float64(done-sum(prev, st.Done)) / dt.Seconds()
		}
		switch {
		case complete[st.Name]:
			b.WriteString(" 100% done")
		case !final || in == 0:
			fmt.Fprintf(&b, " %.1f/s (total not known yet)", rate)
		default:
			pct := 100 * float64(done) / float64(in)
			fmt.Fprintf(&b, " %.0f%% %.1f/s", pct, rate)
			if rate > 0 {
				fmt.Fprintf(&b, " ETA %s", eta(float64(in-done)/rate))
			} else {
				b.WriteString(" ETA ?")
			}
		}
		b.WriteString(":")
		names := append(append([]string(nil), st.In...), st.Done...)
		for k := range cur {
			if strings.HasPrefix(k, st.Name+"/") {
				names = append(names, k)
			}
		}
		sort.Strings(names)
		for _, k := range names {
			if !shown[k] {
				shown[k] = true
				fmt.Fprintf(&b, " %s=%d", k, cur[k])
			}
		}
	}
	var rest []string
	for k := range cur {
		if !shown[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	for _, k := range rest {
		fmt.Fprintf(&b, " %s=%d", k, cur[k])
	}
	return b.String()
}

// eta rounds a number of seconds for a progress line: 45s, 3m20s, 2h05m.
func eta(sec float64) string {
	d := time.Duration(math.Ceil(sec)) * time.Second
	switch {
	case d < time.Minute:
		return d.String()
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 100*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return ">99h"
	}
}

// Line formats one progress line without stages: elapsed time and every
// counter with its rate since start.
func Line(start time.Time) string {
	el := time.Since(start)
	var b strings.Builder
	fmt.Fprintf(&b, "[%6.1fs]", el.Seconds())
	for _, kv := range Snapshot() {
		n := kv[1].(int64)
		fmt.Fprintf(&b, " %s=%d (%.1f/s)", kv[0], n, float64(n)/max(el.Seconds(), 1e-9))
	}
	return b.String()
}

func init() {
	register.DoFn2x0[context.Context, beam.T](&tapFn{})
}
