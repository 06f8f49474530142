// Package accum holds ConGrad's mergeable per-language accumulators
// (METHOD.md §4). Their state is plain exported fields of Beam-encodable
// types (ints, floats, slices) so Beam CombineFns can use them directly as
// accumulators.
package accum

import (
	"errors"
	"fmt"
	"math"

	"github.com/congrad-beam/congrad/congrad/internal/exact"
)

var (
	// ErrDim: a vector's length differs from the accumulator's K, or two
	// accumulators have different K or parameters.
	ErrDim = errors.New("accum: dimension mismatch")
	// ErrNonFinite: an input holds NaN or ±Inf; the accumulator is unchanged.
	ErrNonFinite = errors.New("accum: non-finite value")
	// ErrEmpty: Result of an accumulator that has seen no input.
	ErrEmpty = errors.New("accum: empty accumulator")
	// ErrBadParam: an invalid accumulator parameter (K < 1, γ outside (0,1)).
	ErrBadParam = errors.New("accum: bad parameter")
)

// LimbsPerCoord is the Mean's state size per coordinate, in int64 limbs
// (exact.F32.Limbs = 10, i.e. 80 bytes per coordinate).
var LimbsPerCoord = exact.F32.Limbs

// Mean is the exact mean of float32 vectors. Each coordinate's sum is kept in
// an integer long accumulator (no rounding), so Add and Merge in any order and
// grouping give bit-identical Results: however Beam splits bundles, the
// output bytes are the same. Result rounds once, correctly, to float32.
//
// Memory: 80 bytes per coordinate (655 KB for K=8192).
type Mean struct {
	K     int
	N     int64   // vectors added
	Limbs []int64 // K·LimbsPerCoord; coordinate c uses Limbs[c*10:(c+1)*10]
	Adds  int64   // additions into Limbs since the last normalisation
}

// NewMean returns an empty Mean of dimension k (k < 1 gives a Mean whose
// every Add fails with ErrBadParam; the error surfaces at the first use).
func NewMean(k int) *Mean {
	m := &Mean{K: k}
	if k >= 1 {
		m.Limbs = make([]int64, k*exact.F32.Limbs)
	}
	return m
}

func (m *Mean) check() error {
	if m.K < 1 {
		return fmt.Errorf("%w: mean k=%d", ErrBadParam, m.K)
	}
	if len(m.Limbs) != m.K*exact.F32.Limbs {
		return fmt.Errorf("%w: mean state has %d limbs, want %d for k=%d", ErrDim, len(m.Limbs), m.K*exact.F32.Limbs, m.K)
	}
	return nil
}

// Add adds one vector. Errors: ErrDim, ErrNonFinite (accumulator unchanged).
func (m *Mean) Add(v []float32) error {
	if err := m.fits(v); err != nil {
		return err
	}
	if err := checkFinite(v); err != nil {
		return err
	}
	m.add(v)
	return nil
}

// AddFinite is Add for a vector the caller has already checked to be finite
// (as filter's sketch checks do): it skips Add's scan for NaN and ±Inf. A
// non-finite value corrupts the state without an error.
func (m *Mean) AddFinite(v []float32) error {
	if err := m.fits(v); err != nil {
		return err
	}
	m.add(v)
	return nil
}

// fits checks the state and v's length.
func (m *Mean) fits(v []float32) error {
	if err := m.check(); err != nil {
		return err
	}
	if len(v) != m.K {
		return fmt.Errorf("%w: vector length %d, mean k=%d", ErrDim, len(v), m.K)
	}
	return nil
}

func (m *Mean) add(v []float32) {
	exact.AddF32s(m.Limbs, v)
	m.N++
	m.Adds++
	m.maybeNormalize()
}

func (m *Mean) maybeNormalize() {
	if m.Adds < exact.Headroom {
		return
	}
	L := exact.F32.Limbs
	for c := 0; c < m.K; c++ {
		exact.Normalize(m.Limbs[c*L : (c+1)*L])
	}
	m.Adds = 0
}

// Merge adds o's state into m (o is not modified). Errors: ErrDim.
func (m *Mean) Merge(o *Mean) error {
	if err := m.check(); err != nil {
		return err
	}
	if err := o.check(); err != nil {
		return fmt.Errorf("merge: %w", err)
	}
	if o.K != m.K {
		return fmt.Errorf("%w: merge k=%d into k=%d", ErrDim, o.K, m.K)
	}
	exact.AddTo(m.Limbs, o.Limbs)
	m.N += o.N
	m.Adds += o.Adds + 1
	m.maybeNormalize()
	return nil
}

// Result returns the mean, each coordinate the exact sum divided by N and
// correctly rounded to float32. Errors: ErrEmpty when N == 0.
func (m *Mean) Result() ([]float32, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	if m.N == 0 {
		return nil, ErrEmpty
	}
	L := exact.F32.Limbs
	out := make([]float32, m.K)
	for c := range out {
		out[c] = exact.Quotient32(m.Limbs[c*L:(c+1)*L], exact.F32, m.N)
	}
	return out, nil
}

func checkFinite(v []float32) error {
	for i, x := range v {
		if math.Float32bits(x)&0x7f800000 == 0x7f800000 {
			return fmt.Errorf("%w: element %d is %v", ErrNonFinite, i, x)
		}
	}
	return nil
}

// settleRows is how many vectors Staged adds in float64 before it settles
// them into the limbs: it bounds the staged sums' magnitude (≤ 1024 times
// the largest input), which keeps TwoSum's errors, and so the slow adds, rare.
const settleRows = 1024

// Staged fills a Mean through a float64 staging vector
// (exact.AddF32sStaged): each value is one float64 add plus an exact error
// term that is almost always zero, about half the CPU of Mean.Add. The sum
// is exact all the same, so the Mean it yields is bit-identical to one
// filled with Add. Read the Mean only through Mean(), which settles the
// staging first; Staged itself is not a Beam accumulator (its staging is
// unexported and would not be encoded).
//
// Memory: Mean's 80 bytes plus 8 bytes per coordinate.
type Staged struct {
	m    *Mean
	s    []float64
	rows int
}

// NewStaged returns an empty Staged of dimension k (k < 1: every Add fails
// with ErrBadParam, as for NewMean).
func NewStaged(k int) *Staged {
	st := &Staged{m: NewMean(k)}
	if k >= 1 {
		st.s = make([]float64, k)
	}
	return st
}

// Add adds one vector. Errors: ErrDim, ErrNonFinite (state unchanged).
func (st *Staged) Add(v []float32) error {
	if err := checkFinite(v); err != nil {
		return err
	}
	return st.AddFinite(v)
}

// AddFinite is Add for a vector already checked to be finite.
func (st *Staged) AddFinite(v []float32) error {
	if err := st.m.fits(v); err != nil {
		return err
	}
	exact.AddF32sStaged(st.m.Limbs, st.s, v)
	st.m.N++
	st.m.Adds++
	if st.rows++; st.rows == settleRows {
		st.settle()
	}
	st.m.maybeNormalize()
	return nil
}

// settle moves the staged sums into the limbs; nothing to do before the
// first Add (or ever, when k < 1: no Add succeeds).
func (st *Staged) settle() {
	if st.rows == 0 {
		return
	}
	exact.SettleF64(st.m.Limbs, st.s)
	st.m.Adds++
	st.rows = 0
	st.m.maybeNormalize()
}

// Mean settles the staging and returns the Mean (owned by st; further Adds
// go on changing it).
func (st *Staged) Mean() *Mean {
	st.settle()
	return st.m
}
