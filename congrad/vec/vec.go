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

// Dot returns <a, b> accumulated in float64: 8 partial sums (element i goes
// to sum i mod 8), combined pairwise in a fixed order. It reads
// min(len(a), len(b)) elements; callers that need equal lengths check them
// (Cosine does).
func Dot(a, b []float32) float64 {
	n := min(len(a), len(b))
	a, b = a[:n], b[:n]
	var s0, s1, s2, s3, s4, s5, s6, s7 float64
	i := 0
	for ; i+8 <= n; i += 8 {
		x, y := a[i:i+8:i+8], b[i:i+8:i+8]
		s0 += float64(x[0]) * float64(y[0])
		s1 += float64(x[1]) * float64(y[1])
		s2 += float64(x[2]) * float64(y[2])
		s3 += float64(x[3]) * float64(y[3])
		s4 += float64(x[4]) * float64(y[4])
		s5 += float64(x[5]) * float64(y[5])
		s6 += float64(x[6]) * float64(y[6])
		s7 += float64(x[7]) * float64(y[7])
	}
	for ; i < n; i++ {
		s0 += float64(a[i]) * float64(b[i])
	}
	return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
}

// Norm returns ||a||_2.
func Norm(a []float32) float64 { return math.Sqrt(Dot(a, a)) }

// CheckFinite returns an error wrapping ErrNonFinite that names the first
// NaN/Inf index, or nil.
func CheckFinite(a []float32) error {
	if allFinite(a) {
		return nil
	}
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
	ab, aa, bb := dot3(a, b)
	if !finite(aa) || !finite(bb) {
		// Finite float32 inputs cannot overflow these float64 sums (at most
		// 2^256 per term), so a non-finite sum means a NaN/Inf input.
		if err := CheckFinite(a); err != nil {
			return 0, err
		}
		return 0, CheckFinite(b)
	}
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

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

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

// CosineNorm returns cos(s, target) given ||s|| (e.g. the Norm stored with
// every sketch), so only <s, target> is computed: the filter's fast path.
// norm must be Norm(s); a zero norm gives ErrZero. Errors as for Cosine.
func (t *Target) CosineNorm(s []float32, norm float64) (float64, error) {
	if len(s) != len(t.v) {
		return 0, fmt.Errorf("%w: %d vs target %d", ErrDim, len(s), len(t.v))
	}
	if !finite(norm) || norm < 0 {
		return 0, fmt.Errorf("%w: norm %v", ErrNonFinite, norm)
	}
	ab := Dot(s, t.v)
	if !finite(ab) { // see Cosine: only a NaN/Inf input gets here
		return 0, CheckFinite(s)
	}
	return cosineFrom(ab, norm, t.norm)
}

// Cosine returns cos(s, target). Errors as for the package-level Cosine.
func (t *Target) Cosine(s []float32) (float64, error) {
	if len(s) != len(t.v) {
		return 0, fmt.Errorf("%w: %d vs target %d", ErrDim, len(s), len(t.v))
	}
	ab, aa := dot2(s, t.v)
	if !finite(aa) { // see Cosine
		return 0, CheckFinite(s)
	}
	return cosineFrom(ab, math.Sqrt(aa), t.norm)
}

// dot2 returns <a,b>, <a,a> in one pass (4 partial sums each).
func dot2(a, b []float32) (ab, aa float64) {
	n := min(len(a), len(b))
	a, b = a[:n], b[:n]
	var x0, x1, x2, x3, y0, y1, y2, y3 float64
	i := 0
	for ; i+4 <= n; i += 4 {
		p, q := a[i:i+4:i+4], b[i:i+4:i+4]
		p0, p1, p2, p3 := float64(p[0]), float64(p[1]), float64(p[2]), float64(p[3])
		x0 += p0 * float64(q[0])
		x1 += p1 * float64(q[1])
		x2 += p2 * float64(q[2])
		x3 += p3 * float64(q[3])
		y0 += p0 * p0
		y1 += p1 * p1
		y2 += p2 * p2
		y3 += p3 * p3
	}
	for ; i < n; i++ {
		p := float64(a[i])
		x0 += p * float64(b[i])
		y0 += p * p
	}
	return (x0 + x1) + (x2 + x3), (y0 + y1) + (y2 + y3)
}

// allFinite is a branch-free scan: a float32 is finite iff its bits without
// the sign are below those of +Inf.
func allFinite(a []float32) bool { return maxAbsBits(a) < 0x7f800000 }

// FiniteNonzero reports, in one pass, whether every element of a is finite
// (no NaN or ±Inf) and whether any is nonzero; for finite vectors, nonzero
// is exactly Norm(a) != 0.
func FiniteNonzero(a []float32) (finite, nonzero bool) {
	m := maxAbsBits(a)
	return m < 0x7f800000, m != 0
}

// maxAbsBits is the largest bit pattern of |a[i]|: >= 0x7f800000 when some
// element is NaN or ±Inf, 0 when all are ±0.
func maxAbsBits(a []float32) uint32 {
	var m0, m1, m2, m3 uint32
	for len(a) >= 4 {
		m0 = max(m0, math.Float32bits(a[0])&0x7fffffff)
		m1 = max(m1, math.Float32bits(a[1])&0x7fffffff)
		m2 = max(m2, math.Float32bits(a[2])&0x7fffffff)
		m3 = max(m3, math.Float32bits(a[3])&0x7fffffff)
		a = a[4:]
	}
	for _, v := range a {
		m0 = max(m0, math.Float32bits(v)&0x7fffffff)
	}
	return max(m0, m1, m2, m3)
}
