package sketch

import (
	"fmt"
	"math"

	"github.com/congrad-beam/congrad/congrad/internal/exact"
)

// Sketcher accumulates one sketch s = S·g from a gradient that arrives in
// named blocks. The result is exact up to one final rounding per coordinate:
// s[r] = float32(Σ_j S[r,j]·g[j]) computed without intermediate rounding, so
// it is bit-identical however the gradient is split into blocks and in
// whatever order the blocks (and parameters) arrive. A Sketcher is not safe
// for concurrent use; use one per goroutine.
type Sketcher struct {
	spec Spec
	k    int

	// countsketch: per (exponent band, bucket) float64 partial sums. Every
	// float32 in band b is a multiple of 2^(8b-150) (b=0: 2^-149) and below
	// 2^(8b-119), a ratio of at most 2^31, so up to 2^21 of them sum in
	// float64 without any rounding. Bands are flushed into the long
	// accumulators before that limit. Layout [band][bucket].
	bands   []float64
	used    uint32 // bit b set when band b may hold non-zero sums
	flushed bool   // limbs may be non-zero (a flush happened since Reset)
	pending int    // additions since the last flush

	limbs []int64 // k long accumulators (exact.F32 for countsketch, exact.F32Prod for gaussian)
	adds  int     // limb additions since the last Normalize (gaussian)

	col []float32 // gaussian: scratch column

	codes    map[string][]uint32 // CacheCodes: per-param bucket|sign codes
	codeMax  int                 // budget in columns
	codeUsed int

	lastParam string // cache: the parameter key of the last Add
	lastKey   uint64
	haveKey   bool
}

// bandFlush is the number of countsketch additions after which bands must be
// flushed to keep float64 band sums exact (see Sketcher.bands). Any smaller
// value is also exact; tests lower it to exercise the flush path.
var bandFlush = 1 << 21

// New returns a Sketcher for spec. Errors: ErrInvalidSpec.
func New(spec Spec) (*Sketcher, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	s := &Sketcher{spec: spec, k: spec.K}
	switch spec.Method {
	case CountSketch:
		s.bands = make([]float64, 32*spec.K)
		s.limbs = make([]int64, spec.K*exact.F32.Limbs)
	case Gaussian:
		s.limbs = make([]int64, spec.K*exact.F32Prod.Limbs)
		s.col = make([]float32, spec.K)
	}
	return s, nil
}

// Spec returns the sketcher's spec.
func (s *Sketcher) Spec() Spec { return s.spec }

func (s *Sketcher) key(param string) uint64 {
	if !s.haveKey || param != s.lastParam {
		s.lastParam, s.lastKey, s.haveKey = param, ParamKey(s.spec.Seed, param), true
	}
	return s.lastKey
}

// Add adds block = g_param[offset : offset+len(block)] to the sketch. Adding
// the same elements twice counts them twice (the map is linear). Errors:
// ErrBadBlock for a negative offset, ErrNonFinite for NaN/Inf (naming the
// parameter and index); on error the sketch is unchanged.
func (s *Sketcher) Add(param string, offset int, block []float32) error {
	if offset < 0 || offset > math.MaxInt-len(block) {
		return fmt.Errorf("%w: param %q offset %d len %d", ErrBadBlock, param, offset, len(block))
	}
	bands := scan(block)
	if bands&(1<<31) != 0 {
		for i, v := range block {
			if math.Float32bits(v)&0x7f800000 == 0x7f800000 {
				return fmt.Errorf("%w: param %q index %d is %v", ErrNonFinite, param, offset+i, v)
			}
		}
	}
	if len(block) == 0 {
		return nil
	}
	key := s.key(param)
	if s.spec.Method == Gaussian {
		s.addGaussian(key, offset, block)
		return nil
	}
	s.used |= bands
	for len(block) > 0 {
		n := min(len(block), bandFlush-s.pending)
		switch codes := s.codesFor(param, key, offset, n); {
		case codes != nil:
			s.addCodes(codes, block[:n])
		case s.k&(s.k-1) == 0:
			s.addCountPow2(key, uint64(offset), block[:n])
		default:
			s.addCount(key, uint64(offset), block[:n])
		}
		s.pending += n
		if s.pending >= bandFlush {
			s.flush()
			s.used |= bands
		}
		block, offset = block[n:], offset+n
	}
	return nil
}

// addCount is the countsketch hot loop: one SplitMix64 output per element,
// the sign applied by flipping the float's sign bit, one exact float64 add
// into the element's exponent band. The caller has marked the bands in use.
func (s *Sketcher) addCount(key, j uint64, block []float32) {
	k := s.k
	k64 := uint64(k)
	bands := s.bands[:32*k]
	z := key + (j+1)*golden // SplitMix64 state of column j
	for _, v := range block {
		x := mix(z)
		z += golden
		b, neg := bucketSign(x, k64)
		w := math.Float32bits(v) ^ neg
		band := int(w>>26) & 31 // top 5 bits of the 8-bit exponent
		bands[band*k+b] += float64(math.Float32frombits(w))
	}
}

// scan returns the set of exponent bands (bit b for band b) that block's
// values fall in. Band 31 holds exponents 248..255, so a block with NaN or
// ±Inf always sets bit 31; only then does Add look for them one by one.
func scan(block []float32) uint32 {
	var m0, m1, m2, m3 uint32
	for len(block) >= 4 {
		m0 |= 1 << (math.Float32bits(block[0]) >> 26 & 31)
		m1 |= 1 << (math.Float32bits(block[1]) >> 26 & 31)
		m2 |= 1 << (math.Float32bits(block[2]) >> 26 & 31)
		m3 |= 1 << (math.Float32bits(block[3]) >> 26 & 31)
		block = block[4:]
	}
	for _, v := range block {
		m0 |= 1 << (math.Float32bits(v) >> 26 & 31)
	}
	return m0 | m1 | m2 | m3
}

// flush moves the band sums into the long accumulators (exactly) and clears
// the bands that were used.
func (s *Sketcher) flush() {
	L := exact.F32.Limbs
	for band := 0; band < 32; band++ {
		if s.used&(1<<band) == 0 {
			continue
		}
		row := s.bands[band*s.k : (band+1)*s.k]
		for b, v := range row {
			if v != 0 {
				exact.AddF64(s.limbs[b*L:(b+1)*L], exact.F32, v)
			}
		}
		clear(row)
	}
	if s.used != 0 {
		s.flushed = true
		// Each flush adds < 2^32 per limb; normalising every time keeps the
		// headroom argument trivial and costs little next to 2^21 elements.
		for b := 0; b < s.k; b++ {
			exact.Normalize(s.limbs[b*L : (b+1)*L])
		}
	}
	s.used, s.pending = 0, 0
}

// addGaussian adds Σ_j S[:,j]·g[j]: each product of two float32 is exact in
// float64 and goes into a long accumulator, so the sum is exact.
func (s *Sketcher) addGaussian(key uint64, offset int, block []float32) {
	L := exact.F32Prod.Limbs
	for i, v := range block {
		if v == 0 {
			continue // zero columns contribute nothing; skip generating them
		}
		gaussianColumn(sm(key, uint64(offset+i)), s.k, s.col)
		g := float64(v)
		for r, e := range s.col {
			exact.AddF64(s.limbs[r*L:(r+1)*L], exact.F32Prod, float64(e)*g)
		}
		s.adds++
		if s.adds >= exact.Headroom {
			s.normalizeAll(L)
		}
	}
}

func (s *Sketcher) normalizeAll(L int) {
	for b := 0; b < s.k; b++ {
		exact.Normalize(s.limbs[b*L : (b+1)*L])
	}
	s.adds = 0
}

// Sketch returns the sketch so far (a new slice of length K). Coordinates
// whose exact value exceeds the float32 range come back as ±Inf; callers
// check with vec.CheckFinite before storing.
func (s *Sketcher) Sketch() []float32 {
	out := make([]float32, s.k)
	if s.spec.Method == Gaussian {
		L := exact.F32Prod.Limbs
		for r := range out {
			out[r] = exact.Float32(s.limbs[r*L:(r+1)*L], exact.F32Prod)
		}
		return out
	}
	// Combine limbs and band sums per bucket without changing the state, so
	// Sketch can be called mid-stream and costs one pass over the buckets.
	L := exact.F32.Limbs
	var usedBands []int
	for band := 0; band < 32; band++ {
		if s.used&(1<<band) != 0 {
			usedBands = append(usedBands, band)
		}
	}
	var buf [16]int64
	w := buf[:L]
	for b := range out {
		var single float64
		nz := 0
		for _, band := range usedBands {
			if v := s.bands[band*s.k+b]; v != 0 {
				single = v
				nz++
			}
		}
		if !s.flushed && nz <= 1 && math.Abs(single) < math.MaxFloat32 {
			// One exact float64 term: the conversion rounds correctly.
			out[b] = float32(single)
			continue
		}
		if s.flushed {
			copy(w, s.limbs[b*L:(b+1)*L])
		} else {
			clear(w)
		}
		for _, band := range usedBands {
			if v := s.bands[band*s.k+b]; v != 0 {
				exact.AddF64(w, exact.F32, v)
			}
		}
		out[b] = exact.Float32(w, exact.F32)
	}
	return out
}

// Reset clears the sketch for the next gradient, keeping its memory.
func (s *Sketcher) Reset() {
	for band := 0; band < 32 && s.bands != nil; band++ {
		if s.used&(1<<band) != 0 {
			clear(s.bands[band*s.k : (band+1)*s.k])
		}
	}
	if s.flushed || s.spec.Method == Gaussian {
		clear(s.limbs)
	}
	s.used, s.pending, s.adds, s.flushed = 0, 0, 0, false
}
