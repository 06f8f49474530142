package sketch

import (
	"math"
	"math/bits"
)

// CacheCodes makes a countsketch Sketcher remember the bucket|sign code of
// every column it hashes, for up to maxColumns columns in total (4 bytes
// each), and reuse them for later gradients over the same parameters. A
// pipeline sketches thousands of gradients of the same parameters, and a
// cached column costs a table load instead of a SplitMix64 evaluation (about
// 2x faster; docs/perf/core.md). The codes are derived from the spec alone,
// so results are bit-identical with or without the cache. maxColumns <= 0
// turns caching off (the default). No effect on gaussian Sketchers.
func (s *Sketcher) CacheCodes(maxColumns int) {
	if maxColumns <= 0 || s.spec.Method != CountSketch {
		s.codes, s.codeMax, s.codeUsed = nil, 0, 0
		return
	}
	if s.codes == nil {
		s.codes = map[string][]uint32{}
	}
	s.codeMax = maxColumns
}

// codesFor returns the codes of columns [offset, offset+n) of param, growing
// the param's table if the budget allows, or nil to fall back to hashing.
func (s *Sketcher) codesFor(param string, key uint64, offset, n int) []uint32 {
	if s.codes == nil {
		return nil
	}
	cur := s.codes[param]
	need := offset + n
	if need <= len(cur) {
		return cur[offset:need]
	}
	extra := need - len(cur)
	if s.codeUsed+extra > s.codeMax {
		return nil
	}
	k := uint64(s.k)
	z := key + uint64(len(cur)+1)*golden
	for j := len(cur); j < need; j++ {
		b, neg := bucketSign(mix(z), k)
		z += golden
		cur = append(cur, uint32(b)|neg)
	}
	s.codes[param] = cur
	s.codeUsed += extra
	return cur[offset:need]
}

// addCodes is the cached-code hot loop (see addCount).
func (s *Sketcher) addCodes(codes []uint32, block []float32) {
	k := s.k
	bands := s.bands[:32*k]
	codes = codes[:len(block)]
	for i, v := range block {
		c := codes[i]
		w := math.Float32bits(v) ^ (c & 0x80000000)
		band := int(w>>26) & 31
		bands[band*k+int(c&0x7fffffff)] += float64(math.Float32frombits(w))
	}
}

// addCountPow2 is addCount for K = 2^m: the bucket is the top m bits of the
// low 63 bits of x, i.e. (x<<1)>>(64-m), the same value as the 128-bit
// product of the general rule without a multiply.
func (s *Sketcher) addCountPow2(key, j uint64, block []float32) {
	k := s.k
	sh := uint(64 - bits.TrailingZeros64(uint64(k)))
	bands := s.bands[:32*k]
	z := key + (j+1)*golden
	for _, v := range block {
		x := mix(z)
		z += golden
		b := int((x << 1) >> sh)
		w := math.Float32bits(v) ^ uint32(x>>63)<<31
		band := int(w>>26) & 31
		bands[band*k+b] += float64(math.Float32frombits(w))
	}
}
