package sideinput

import (
	"os"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/runners/prism"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
)

func init() {
	register.Combiner2[int, int](&slowSumFn{})
	register.Function2x1(sideCount)
	register.Function2x1(add)
	register.Function2x1(sideKVCount)
	register.Function2x0(keyBy)
	register.Function3x0(ungroup)
	register.Emitter1[int]()
	register.Iter1[int]()
	register.Emitter2[string, int]()
	register.Iter2[string, int]()
}

func TestMain(m *testing.M) {
	os.Exit(ptest.MainRetWithDefault(m, "prism"))
}

// slowSumFn is a sum whose result takes a while to come out, so that the
// stage producing it is still pending when a sibling combine's reader is
// scheduled.
type slowSumFn struct{}

func (slowSumFn) MergeAccumulators(a, b int) int { return a + b }
func (slowSumFn) ExtractOutput(a int) int {
	time.Sleep(20 * time.Millisecond)
	return a
}

func add(a, b int) int { return a + b }

// sideCount is the reader: it reports how many side values it saw (one
// when the side input was complete).
func sideCount(_ int, side func(*int) bool) int {
	n := 0
	var v int
	for side(&v) {
		n++
	}
	return n
}

func sideKVCount(_ int, side func(*string, *int) bool) int {
	n := 0
	var k string
	var v int
	for side(&k, &v) {
		n += v
	}
	return n
}

func keyBy(x int, emit func(string, int)) { emit("k", x) }

func ungroup(_ string, vs func(*int) bool, emit func(int)) {
	var v int
	for vs(&v) {
		emit(v)
	}
}

// siblings builds n reader/side pairs: each reader's main input and its side
// input are two combines over the same source.
//
// The unsettled form of this pipeline did not race in 40 runs of 8 pairs on
// the 2-core VM (the window is one pass of Prism's scheduling loop); the
// race was measured where it showed, in the pipelines package: plan stage
// reading no consensus in 2 of ~90 runs of
// TestMethodOptionsMatchReference/group8-flush3 before, 0 of 300 after.
// What this test checks is that a settled copy is whole.
func siblings(s beam.Scope, n int, settle bool) []beam.PCollection {
	// Values out of a GroupByKey, as in the pipelines (their timestamps
	// are the end of the global window).
	src := beam.ParDo(s, ungroup, beam.GroupByKey(s, beam.ParDo(s, keyBy, beam.Create(s, 1, 2, 3, 4))))
	var outs []beam.PCollection
	for i := 0; i < n; i++ {
		main := beam.Combine(s, add, src)
		side := beam.Combine(s, &slowSumFn{}, src)
		if settle {
			side = Settled(s, side)
		}
		outs = append(outs, beam.ParDo(s, sideCount, main, beam.SideInput{Input: side}))
	}
	return outs
}

func TestSettledSideInputIsComplete(t *testing.T) {
	p, s := beam.NewPipelineWithRoot()
	for _, out := range siblings(s, 24, true) {
		passert.Equals(s, out, 1)
	}
	// A KV side input, settled: every value arrives (1+2+3+4).
	src := beam.Create(s, 1, 2, 3, 4)
	kvSide := Settled(s, beam.ParDo(s, keyBy, src))
	passert.Equals(s, beam.ParDo(s, sideKVCount, beam.Combine(s, add, src), beam.SideInput{Input: kvSide}), 10)
	// An empty PCollection settles to an empty side input.
	none := Settled(s, beam.ParDo(s, keyBy, beam.CreateList(s, []int{})))
	passert.Equals(s, beam.ParDo(s, sideKVCount, beam.Combine(s, add, src), beam.SideInput{Input: none}), 0)
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}
}
