// Package sideinput makes a PCollection safe to read as a Beam side input
// on Prism.
//
// Prism (Beam v2.77) starts a bundle of a stage with side inputs once each
// side input's producing stage has an output watermark at or past the
// stage's own upstream watermark. Everything downstream of a GroupByKey or
// Combine carries the end-of-global-window timestamp, so a stage fed by a
// GroupByKey can see its upstream watermark at exactly that timestamp while
// a side input produced downstream of another GroupByKey (a sibling combine,
// say) still has its input pending at the same timestamp: the check passes,
// the bundle runs, and the side input reads as empty. Seen in CI as a plan
// stage reading no consensus about once in 45 runs
// (pipelines TestMethodOptionsMatchReference/group8-flush3).
//
// Settled copies a PCollection through a stage whose main input is an
// Impulse. That stage's upstream watermark is the end of time as soon as the
// impulse is processed, so it waits until the source PCollection is complete;
// and until it has run, its own output watermark is the start of time, so no
// reader of the copy is let through early. The copy holds the same elements;
// readers pay one more stage and one more read of the (small) side data.
package sideinput

import (
	"fmt"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/typex"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
)

func init() {
	register.Function3x0(copyFn)
	register.Function3x0(copyKVFn)
	register.Iter1[beam.T]()
	register.Iter2[beam.X, beam.Y]()
	register.Emitter1[beam.T]()
	register.Emitter2[beam.X, beam.Y]()
}

// Settled returns a copy of col (a PCollection or a PCollection of KVs) that
// is safe to pass as a beam.SideInput from any stage: its readers start only
// after all of col is there.
func Settled(s beam.Scope, col beam.PCollection) beam.PCollection {
	s = s.Scope("sideinput.Settled")
	if !col.IsValid() {
		panic("sideinput.Settled: invalid PCollection")
	}
	t := col.Type()
	switch {
	case typex.IsKV(t):
		return beam.ParDo(s, copyKVFn, beam.Impulse(s), beam.SideInput{Input: col})
	case t.Class() == typex.Concrete:
		return beam.ParDo(s, copyFn, beam.Impulse(s), beam.SideInput{Input: col})
	default:
		panic(fmt.Sprintf("sideinput.Settled: unsupported PCollection type %v", t))
	}
}

func copyFn(_ []byte, in func(*beam.T) bool, emit func(beam.T)) {
	var v beam.T
	for in(&v) {
		emit(v)
	}
}

func copyKVFn(_ []byte, in func(*beam.X, *beam.Y) bool, emit func(beam.X, beam.Y)) {
	var k beam.X
	var v beam.Y
	for in(&k, &v) {
		emit(k, v)
	}
}

// Read is beam.SideInput{Input: Settled(s, col)}: col read as a side input,
// safely on Prism.
func Read(s beam.Scope, col beam.PCollection) beam.SideInput {
	return beam.SideInput{Input: Settled(s, col)}
}
