// Package vec is ConGrad's host vector maths on []float32.
//
// Inner products accumulate in float64. Every product of two float32 values is
// exact in float64 (24+24 significant bits < 53), so a compiler that fuses
// multiply-add (arm64) and one that does not (amd64) produce the same bits:
// results depend only on the fixed summation order used here, not on the
// machine. gonum's blas32.Dot accumulates in float32 with assembly that differs
// by architecture, which is why it is not used for scores that decide pairs.
package vec

import (
	"errors"
	"fmt"
	"math"
)

var (
	// ErrDim: the vectors have different lengths.
	ErrDim = errors.New("vec: dimension mismatch")
	// ErrZero: a vector has zero norm, so its direction is undefined.
	ErrZero = errors.New("vec: zero vector")
	// ErrNonFinite: a value is NaN or ±Inf.
	ErrNonFinite = errors.New("vec: non-finite value")
)

// Dot returns <a, b> accumulated in float64 (4 partial sums, fixed order).
// It reads min(len(a), len(b)) elements; callers that need equal lengths
// check them (Cosine does).
func Dot(a, b []float32) float64 {
	n := min(len(a), len(b))
	a, b = a[:n], b[:n]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= n; i += 4 {
		s0 += float64(a[i]) * float64(b[i])
		s1 += float64(a[i+1]) * float64(b[i+1])
		s2 += float64(a[i+2]) * float64(b[i+2])
		s3 += float64(a[i+3]) * float64(b[i+3])
	}
	for ; i < n; i++ {
		s0 += float64(a[i]) * float64(b[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// Norm returns ||a||_2.
func Norm(a []float32) float64 { return math.Sqrt(Dot(a, a)) }

// CheckFinite returns an error wrapping ErrNonFinite that names the first
// NaN/Inf index, or nil.
func CheckFinite(a []float32) error {
	for i, v := range a {
		// The exponent field is all ones exactly for NaN and ±Inf.
		if math.Float32bits(v)&0x7f800000 == 0x7f800000 {
			return fmt.Errorf("%w: element %d is %v", ErrNonFinite, i, v)
		}
	}
	return nil
}

// Cosine returns <a,b>/(||a||·||b||). Errors: ErrDim on length mismatch,
// ErrNonFinite for NaN/Inf input, ErrZero when either vector is zero.
func Cosine(a, b []float32) (float64, error) {
	if len(a) != len(b) {
		return 0, fmt.Errorf("%w: %d vs %d", ErrDim, len(a), len(b))
	}
	if err := CheckFinite(a); err != nil {
		return 0, err
	}
	if err := CheckFinite(b); err != nil {
		return 0, err
	}
	ab, aa, bb := dot3(a, b)
	return cosineFrom(ab, math.Sqrt(aa), math.Sqrt(bb))
}

// cosineFrom takes the inner product and the two norms.
func cosineFrom(ab, na, nb float64) (float64, error) {
	if na == 0 || nb == 0 {
		return 0, ErrZero
	}
	c := ab / (na * nb)
	// Rounding can push |c| a hair past 1; the cosine is defined in [-1, 1].
	return max(-1, min(1, c)), nil
}

// dot3 returns <a,b>, <a,a>, <b,b> in one pass.
func dot3(a, b []float32) (ab, aa, bb float64) {
	n := min(len(a), len(b))
	a, b = a[:n], b[:n]
	var x0, x1, y0, y1, z0, z1 float64
	i := 0
	for ; i+2 <= n; i += 2 {
		p, q := float64(a[i]), float64(b[i])
		r, s := float64(a[i+1]), float64(b[i+1])
		x0 += p * q
		y0 += p * p
		z0 += q * q
		x1 += r * s
		y1 += r * r
		z1 += s * s
	}
	for ; i < n; i++ {
		p, q := float64(a[i]), float64(b[i])
		x0 += p * q
		y0 += p * p
		z0 += q * q
	}
	return x0 + x1, y0 + y1, z0 + z1
}

// Target scores many vectors against one fixed direction (the consensus g*):
// its norm is computed once, so each Cosine is one pass over the input.
type Target struct {
	v    []float32
	norm float64
}

// NewTarget copies g. Errors: ErrNonFinite, ErrZero.
func NewTarget(g []float32) (*Target, error) {
	if err := CheckFinite(g); err != nil {
		return nil, err
	}
	t := &Target{v: append([]float32(nil), g...)}
	t.norm = Norm(t.v)
	if t.norm == 0 {
		return nil, ErrZero
	}
	return t, nil
}

// Dim is the target's length.
func (t *Target) Dim() int { return len(t.v) }

// Cosine returns cos(s, target). Errors as for the package-level Cosine.
func (t *Target) Cosine(s []float32) (float64, error) {
	if len(s) != len(t.v) {
		return 0, fmt.Errorf("%w: %d vs target %d", ErrDim, len(s), len(t.v))
	}
	if err := CheckFinite(s); err != nil {
		return 0, err
	}
	ab, aa := dot2(s, t.v)
	return cosineFrom(ab, math.Sqrt(aa), t.norm)
}

// dot2 returns <a,b>, <a,a> in one pass.
func dot2(a, b []float32) (ab, aa float64) {
	n := min(len(a), len(b))
	a, b = a[:n], b[:n]
	var x0, x1, y0, y1 float64
	i := 0
	for ; i+2 <= n; i += 2 {
		p, q := float64(a[i]), float64(b[i])
		r, s := float64(a[i+1]), float64(b[i+1])
		x0 += p * q
		y0 += p * p
		x1 += r * s
		y1 += r * r
	}
	for ; i < n; i++ {
		p := float64(a[i])
		x0 += p * float64(b[i])
		y0 += p * p
	}
	return x0 + x1, y0 + y1
}
