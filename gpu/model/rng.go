package model

import (
	"hash/fnv"
	"math"
)

// RNG is a SplitMix64 stream keyed by (seed, name): each weight tensor gets
// its own stream, so adding a tensor does not change the others' values.
type RNG struct{ s uint64 }

// NewRNG derives a stream from seed and a name.
func NewRNG(seed uint64, name string) *RNG {
	h := fnv.New64a()
	h.Write([]byte(name))
	return &RNG{s: seed ^ h.Sum64()*0x9E3779B97F4A7C15}
}

// Uint64 is SplitMix64's next value.
func (r *RNG) Uint64() uint64 {
	r.s += 0x9E3779B97F4A7C15
	z := r.s
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// Float64 is uniform in [0, 1) with 53 random bits.
func (r *RNG) Float64() float64 { return float64(r.Uint64()>>11) / (1 << 53) }

// Normal is a standard normal draw (Box–Muller, one value per two uniforms).
func (r *RNG) Normal() float64 {
	u1 := 1 - r.Float64() // (0, 1]: log is finite
	u2 := r.Float64()
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}
