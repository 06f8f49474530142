package filter

import (
	"fmt"
	"math"
	"sort"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/internal/sideinput"
)

// cutoffBins is the resolution of the global-top histogram over [-1, 1].
const cutoffBins = 4096

// Hist counts finite scores per bin; it is the first of two passes that find
// the exact global-top cutoff without holding every score in one place.
type Hist struct{ Counts []int64 }

// Bucket is the items of the one histogram bin that contains the cutoff.
type Bucket struct{ Items []keep.Scored }

func cutoffBin(score float64) int {
	b := int(math.Floor((score + 1) / 2 * cutoffBins))
	return min(max(b, 0), cutoffBins-1)
}

// locate returns, for the histogram, how many pairs are kept, the bin that
// holds the last kept pair and how many kept pairs lie in higher bins.
func (h Hist) locate(rho float64) (keepN, total int, bin int, above int) {
	for _, c := range h.Counts {
		total += int(c)
	}
	keepN = keep.KeepCount(total, rho)
	if keepN == 0 {
		return 0, total, -1, 0
	}
	for b := cutoffBins - 1; b >= 0; b-- {
		if above+int(h.Counts[b]) >= keepN {
			return keepN, total, b, above
		}
		above += int(h.Counts[b])
	}
	return keepN, total, -1, above // unreachable: the counts sum to total >= keepN
}

// globalCutoff computes keep.Cutoff for global-top in the pipeline:
// (1) a fixed-size histogram of all scores (a combine: O(bins) memory),
// (2) the scores in the bin that holds the KeepCount-th best pair, gathered
// and ordered by keep.Better. The result equals keep.GlobalCutoff on all scores.
//
//	PCollection<keep.Scored> -> singleton PCollection<keep.Cutoff>
func globalCutoff(s beam.Scope, scored beam.PCollection, rho float64) beam.PCollection {
	s = s.Scope("filter.GlobalCutoff")
	hist := beam.Combine(s, &histFn{}, scored)
	inBin := beam.ParDo(s, &binItemsFn{Rho: rho}, scored, sideinput.Read(s, hist))
	bucket := beam.Combine(s, &bucketFn{}, inBin)
	return beam.ParDo(s, &cutoffFn{Rho: rho}, hist, sideinput.Read(s, bucket))
}

type histFn struct{}

func (histFn) CreateAccumulator() Hist { return Hist{Counts: make([]int64, cutoffBins)} }
func (histFn) AddInput(h Hist, x keep.Scored) Hist {
	if finiteScore(x.Score) {
		h.Counts[cutoffBin(x.Score)]++
	}
	return h
}

// finiteScore: a non-finite score is never kept, so global-top counts and
// cuts among the finite ones (keep.GlobalCutoff).
func finiteScore(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
func (histFn) MergeAccumulators(a, b Hist) Hist {
	for i, c := range b.Counts {
		a.Counts[i] += c
	}
	return a
}
func (histFn) ExtractOutput(h Hist) Hist { return h }

type binItemsFn struct {
	Rho float64
	bin int
	set bool
}

func (f *binItemsFn) ProcessElement(x keep.Scored, hist func(*Hist) bool, emit func(keep.Scored)) {
	if !f.set {
		var h Hist
		f.bin = -1
		if hist(&h) {
			_, _, f.bin, _ = h.locate(f.Rho)
		}
		f.set = true
	}
	if finiteScore(x.Score) && cutoffBin(x.Score) == f.bin {
		emit(x)
	}
}

type bucketFn struct{}

func (bucketFn) CreateAccumulator() Bucket { return Bucket{} }
func (bucketFn) AddInput(b Bucket, x keep.Scored) Bucket {
	b.Items = append(b.Items, x)
	return b
}
func (bucketFn) MergeAccumulators(a, b Bucket) Bucket {
	a.Items = append(a.Items, b.Items...)
	return a
}
func (bucketFn) ExtractOutput(b Bucket) Bucket { return b }

type cutoffFn struct{ Rho float64 }

func (f *cutoffFn) ProcessElement(h Hist, bucket func(*Bucket) bool) (keep.Cutoff, error) {
	keepN, total, bin, above := h.locate(f.Rho)
	c := keep.Cutoff{Keep: keepN, Total: total}
	if keepN == 0 {
		return c, nil
	}
	var b Bucket
	if !bucket(&b) {
		return c, fmt.Errorf("filter: global-top: cutoff bin %d is empty", bin)
	}
	sort.Slice(b.Items, func(i, j int) bool { return keep.Better(b.Items[i], b.Items[j]) < 0 })
	i := keepN - above - 1
	if i < 0 || i >= len(b.Items) {
		return c, fmt.Errorf("filter: global-top: cutoff index %d outside bin %d of %d items", i, bin, len(b.Items))
	}
	c.Last = b.Items[i]
	return c, nil
}

func registerCutoff() {
	register.Combiner2[Hist, keep.Scored](&histFn{})
	register.Combiner2[Bucket, keep.Scored](&bucketFn{})
	register.DoFn3x0[keep.Scored, func(*Hist) bool, func(keep.Scored)](&binItemsFn{})
	register.DoFn2x2[Hist, func(*Bucket) bool, keep.Cutoff, error](&cutoffFn{})
	register.Iter1[*Hist]()
	register.Iter1[*Bucket]()
}
