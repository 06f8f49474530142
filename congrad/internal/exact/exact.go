// Package exact sums floating-point values without rounding, using integer
// "long accumulators": a number is held as sum_i Limbs[i]·2^(32·i+Min) with
// int64 limbs that carry a 32-bit payload each plus headroom for carries.
// Adding is limb-wise, so any order or grouping of the same additions gives
// the same bits; the final value is rounded once, correctly, to float32.
//
// ConGrad needs this because Beam splits and merges bundles in an order the
// pipeline does not control, and the project promises byte-identical outputs.
package exact

import (
	"math"
	"math/big"
	"math/bits"
)

// Format fixes the weight of bit 0 (Min) and the number of limbs.
type Format struct {
	Min   int // exponent of the least significant bit
	Limbs int // number of int64 limbs
}

var (
	// F32 holds exact sums of float32 values: bit 0 is 2^-149 (the smallest
	// subnormal float32); 10 limbs give 320 bits, enough for a float32's
	// 277-bit range plus 2^42 additions of the largest float32.
	F32 = Format{Min: -149, Limbs: 10}
	// F32Prod holds exact sums of products of two float32 values (exact in
	// float64, 48-bit significands): bit 0 is 2^-298.
	F32Prod = Format{Min: -298, Limbs: 19}
)

// Headroom is how many additions (each < 2^32 per limb) a limb absorbs
// before Normalize must run; callers count their additions against it.
const Headroom = 1 << 30

// AddF32 adds v exactly to the F32-format accumulator l (len(l) >= F32.Limbs).
// v must be finite (callers check once per block, not per element).
func AddF32(l []int64, v float32) {
	b := math.Float32bits(v)
	e := (b >> 23) & 0xff
	m := uint64(b & 0x7fffff)
	if e != 0 {
		m |= 1 << 23
	} else {
		e = 1 // subnormal: same scale as the smallest normal exponent
	}
	p := e - 1 // position of the significand's LSB relative to 2^-149
	mag := m << (p & 31)
	lo := int64(mag & 0xffffffff)
	hi := int64(mag >> 32)
	neg := -int64(b >> 31) // 0 or -1: branch-free conditional negation
	lo = (lo ^ neg) - neg
	hi = (hi ^ neg) - neg
	i := int(p >> 5)
	w := l[i : i+2]
	w[0] += lo
	w[1] += hi
}

// f32Limbs is F32.Limbs as a constant, for AddF32s' index arithmetic.
const f32Limbs = 10

// AddF32s adds every v[c] exactly to coordinate c's F32 accumulator,
// l[c*F32.Limbs : (c+1)*F32.Limbs], skipping zeros: AddF32 for a whole
// vector in one loop (the per-coordinate slicing cost as much as the adds).
// len(l) must be at least len(v)*F32.Limbs and the values finite.
func AddF32s(l []int64, v []float32) {
	l = l[:len(v)*f32Limbs]
	for c, x := range v {
		b := math.Float32bits(x)
		if b<<1 == 0 {
			continue // ±0
		}
		e := (b >> 23) & 0xff
		m := uint64(b & 0x7fffff)
		if e != 0 {
			m |= 1 << 23
		} else {
			e = 1
		}
		p := e - 1
		mag := m << (p & 31)
		neg := -int64(b >> 31)
		lo := (int64(mag&0xffffffff) ^ neg) - neg
		hi := (int64(mag>>32) ^ neg) - neg
		j := c*f32Limbs + int(p>>5) // p>>5 <= 7, so j+1 stays in coordinate c
		l[j] += lo
		l[j+1] += hi
	}
}

// AddF32sStaged is AddF32s through a float64 staging vector s (len(s) >=
// len(v)): s[c] += v[c] in float64, and the rounding error of that addition,
// computed exactly by TwoSum, goes into coordinate c's accumulator. The value
// s[c] + (accumulator c) is therefore exactly what AddF32s would hold, and
// SettleF64 later moves s into the accumulators without rounding.
//
// It is faster because the error is zero unless v[c] is about 2^29 times
// smaller than s[c] in magnitude: most additions are one float64 add into a
// vector that stays in L1, instead of an add at a data-dependent limb.
// Every value of s stays an integer multiple of 2^-149 (each v[c] is one, and
// rounding a sum of such multiples to float64 keeps it one), so the errors and
// s itself are representable in the F32 format. Each call counts as one
// addition per limb against Headroom; v must be finite.
func AddF32sStaged(l []int64, s []float64, v []float32) {
	l = l[:len(v)*f32Limbs]
	s = s[:len(v)]
	c := 0
	// Four coordinates per step, one branch for their four errors.
	for ; c+4 <= len(v); c += 4 {
		w, x := s[c:c+4:c+4], v[c:c+4:c+4]
		t0, e0 := twoSum(w[0], float64(x[0]))
		t1, e1 := twoSum(w[1], float64(x[1]))
		t2, e2 := twoSum(w[2], float64(x[2]))
		t3, e3 := twoSum(w[3], float64(x[3]))
		w[0], w[1], w[2], w[3] = t0, t1, t2, t3
		if (math.Float64bits(e0)|math.Float64bits(e1)|math.Float64bits(e2)|math.Float64bits(e3))<<1 != 0 {
			for i, e := range [4]float64{e0, e1, e2, e3} {
				if e != 0 {
					AddF64(l[(c+i)*f32Limbs:(c+i+1)*f32Limbs], F32, e)
				}
			}
		}
	}
	for ; c < len(v); c++ {
		t, e := twoSum(s[c], float64(v[c]))
		s[c] = t
		if e != 0 {
			AddF64(l[c*f32Limbs:(c+1)*f32Limbs], F32, e)
		}
	}
}

// twoSum returns t = fl(a+b) and e with a + b == t + e exactly (Knuth's
// TwoSum; exact in binary64 barring overflow, which sums of float32 values
// cannot reach).
func twoSum(a, b float64) (t, e float64) {
	t = a + b
	bv := t - a
	e = (a - (t - bv)) + (b - bv)
	return t, e
}

// SettleF64 adds every s[c] exactly into coordinate c's F32 accumulator and
// zeroes s: the end of AddF32sStaged's staging. One addition per limb.
func SettleF64(l []int64, s []float64) {
	l = l[:len(s)*f32Limbs]
	for c, x := range s {
		if x != 0 {
			AddF64(l[c*f32Limbs:(c+1)*f32Limbs], F32, x)
			s[c] = 0
		}
	}
}

// AddF64 adds v exactly to accumulator l of format f. v must be finite, an
// integer multiple of 2^f.Min, and small enough for the format; both hold for
// the callers in this module by construction (see the call sites).
func AddF64(l []int64, f Format, v float64) {
	if v == 0 {
		return
	}
	b := math.Float64bits(v)
	e := int((b >> 52) & 0x7ff)
	m := b & (1<<52 - 1)
	if e != 0 {
		m |= 1 << 52
	} else {
		e = 1
	}
	p := e - 1075 - f.Min // LSB position: value = m·2^(e-1075)
	if p < 0 {
		// Only reachable when v has bits below 2^Min; drop nothing silently:
		// shift the significand down (callers guarantee the bits are zero).
		m >>= uint(-p)
		p = 0
	}
	s := uint(p & 31)
	i := p >> 5
	lo := m << s                          // low 64 bits of m·2^s
	top := int64(m >> (64 - s) & mask(s)) // bits that spill past 64 (s > 0 only)
	w0, w1 := int64(lo&0xffffffff), int64(lo>>32)
	if v < 0 {
		w0, w1, top = -w0, -w1, -top
	}
	// The callers' range guarantees i+2 < len(l) except at the very top,
	// where the spilled bits are zero.
	l[i] += w0
	if i+1 < len(l) {
		l[i+1] += w1
	}
	if i+2 < len(l) {
		l[i+2] += top
	}
}

func mask(s uint) uint64 {
	if s == 0 {
		return 0
	}
	return 1<<s - 1
}

// Normalize propagates carries so that limbs 0..n-2 lie in [0, 2^32) and the
// top limb holds the signed remainder. The value is unchanged.
func Normalize(l []int64) {
	for i := 0; i < len(l)-1; i++ {
		c := l[i] >> 32 // arithmetic shift: floor division by 2^32
		l[i] -= c << 32
		l[i+1] += c
	}
}

// AddTo adds accumulator src to dst limb-wise (merge). Both must share a format.
func AddTo(dst, src []int64) {
	for i := range dst {
		dst[i] += src[i]
	}
}

// Float32 returns the accumulator's value correctly rounded (to nearest, ties
// to even) to float32; ±Inf when it exceeds the float32 range. l is not
// modified. len(l) must be <= 32.
func Float32(l []int64, f Format) float32 {
	var buf [32]int64
	w := buf[:len(l)]
	copy(w, l)
	Normalize(w)
	neg := w[len(w)-1] < 0
	if neg {
		for i := range w {
			w[i] = -w[i]
		}
		Normalize(w)
	}
	t := len(w) - 1
	for t >= 0 && w[t] == 0 {
		t--
	}
	if t < 0 {
		return 0
	}
	nb := 32*t + bits.Len64(uint64(w[t])) // bit length of the integer
	shift := nb - 64                      // window = bits [shift, shift+64)
	var top uint64
	sticky := false
	for i := t; i >= 0; i-- {
		off := 32*i - shift
		x := uint64(w[i])
		switch {
		case off >= 0:
			top |= x << uint(off)
		case off > -64:
			top |= x >> uint(-off)
			if x&(1<<uint(-off)-1) != 0 {
				sticky = true
			}
		default:
			if x != 0 {
				sticky = true
			}
		}
	}
	// value = (top + fraction)·2^(shift+Min), top's bit 63 set.
	lead := 63 + shift + f.Min // exponent of the leading bit
	keep := 24
	if lead < -126 {
		keep = 24 - (-126 - lead) // subnormal: fewer significand bits
	}
	var r float32
	if keep < 0 {
		r = 0
	} else {
		drop := uint(64 - keep)
		var q, rem, half uint64
		if drop >= 64 {
			q, rem, half = 0, top, 1<<63
		} else {
			q, rem, half = top>>drop, top&(1<<drop-1), 1<<(drop-1)
		}
		if rem > half || (rem == half && (sticky || q&1 == 1)) {
			q++
		}
		x := math.Ldexp(float64(q), shift+f.Min+int(drop))
		if x > math.MaxFloat32 {
			r = float32(math.Inf(1))
		} else {
			r = float32(x) // exact: q has at most 24 significant bits
		}
	}
	if neg {
		r = -r
	}
	return r
}

// Quotient32 returns (value of l)/n correctly rounded to float32 (n > 0).
// It goes through math/big because it runs once per output coordinate of a
// mean, not per input element.
func Quotient32(l []int64, f Format, n int64) float32 {
	num := BigInt(l)
	den := new(big.Int).SetInt64(n)
	if f.Min < 0 {
		den.Lsh(den, uint(-f.Min))
	} else {
		num.Lsh(num, uint(f.Min))
	}
	r, _ := new(big.Rat).SetFrac(num, den).Float32()
	return r
}

// BigInt returns the accumulator's integer Σ l[i]·2^(32i) (without the 2^Min
// scale) as a big.Int; used by tests and by Quotient32.
func BigInt(l []int64) *big.Int {
	z := new(big.Int)
	t := new(big.Int)
	for i := len(l) - 1; i >= 0; i-- {
		z.Lsh(z, 32)
		z.Add(z, t.SetInt64(l[i]))
	}
	return z
}
