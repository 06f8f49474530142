// Package progress counts rows per pipeline stage in process-wide counters
// so the CLI can print progress while a pipeline runs. With in-process Prism
// or LOOPBACK workers the SDK harness runs in the submitting process, so the
// counters are live; on remote workers (Dataflow, Flink) they stay at zero
// and the runner's UI shows the Beam metrics instead.
package progress

import (
	"context"
	"fmt"
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

// Line formats one progress line: elapsed time and, per counter, rows and
// rows per second since start.
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
