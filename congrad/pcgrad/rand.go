package pcgrad

import "math/bits"

// mix is the SplitMix64 output function (same constants as package sketch).
func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

func mul64(x, y uint64) (hi, lo uint64) { return bits.Mul64(x, y) }
