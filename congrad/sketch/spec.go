// Package sketch compresses gradients into k-dimensional linear sketches
// s = S·g (METHOD.md §3). S is never stored: every entry is derived from a
// counter-based generator keyed by (seed, parameter name, index), so any
// block of any parameter can be sketched independently, in any order, on the
// host or on a device, or by another implementation. The construction is a
// public contract documented in docs/SKETCH.md, whose test vectors are
// checked by this package's tests (vectors_test.go).
package sketch

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// Version is the sketch contract version. Any change to how S is derived, or
// to what a Spec means, bumps it; it is stored with every sketch.
const Version = 1

// Method names a sketch construction.
type Method string

const (
	CountSketch Method = "countsketch" // default: one ±1 per column, O(d)
	Gaussian    Method = "gaussian"    // dense N(0, 1/K) entries, O(K·d)
)

// MaxK bounds K (2^20) so a Sketcher's memory stays bounded: a countsketch
// Sketcher holds 32 band rows and 10 limbs per bucket (336 bytes per bucket,
// most of it untouched), a gaussian one 152 bytes per row.
const MaxK = 1 << 20

var (
	// ErrNonFinite: a gradient block holds NaN or ±Inf; the sketch is unchanged.
	ErrNonFinite = errors.New("sketch: non-finite gradient value")
	// ErrSpecMismatch: two sketches or a sketch and a spec do not agree.
	ErrSpecMismatch = errors.New("sketch: spec mismatch")
	// ErrInvalidSpec: the spec cannot be used (unknown method, bad K, version).
	ErrInvalidSpec = errors.New("sketch: invalid spec")
	// ErrBadBlock: a block's offset is negative or overflows.
	ErrBadBlock = errors.New("sketch: bad block")
)

// Spec fully determines the linear map S.
type Spec struct {
	Method  Method
	K       int
	Seed    uint64
	Version int
}

// DefaultSpec is countsketch with K=8192 (the dimension LESS uses), seed 0.
func DefaultSpec() Spec {
	return Spec{Method: CountSketch, K: 8192, Seed: 0, Version: Version}
}

// Validate reports whether this build can produce sketches for the spec.
func (s Spec) Validate() error {
	switch s.Method {
	case CountSketch, Gaussian:
	default:
		return fmt.Errorf("%w: unknown method %q (want %q or %q)", ErrInvalidSpec, s.Method, CountSketch, Gaussian)
	}
	if s.K < 1 || s.K > MaxK {
		return fmt.Errorf("%w: k=%d out of [1, %d]", ErrInvalidSpec, s.K, MaxK)
	}
	if s.Version != Version {
		return fmt.Errorf("%w: version %d, this build implements version %d", ErrInvalidSpec, s.Version, Version)
	}
	return nil
}

// String is the canonical text form stored in file metadata,
// e.g. "countsketch:k=8192:seed=0:v1". ParseSpec(s.String()) == s.
func (s Spec) String() string {
	return fmt.Sprintf("%s:k=%d:seed=%d:v%d", s.Method, s.K, s.Seed, s.Version)
}

// ParseSpec parses the canonical form written by String. It accepts exactly
// that form (so a stored spec string has one spelling) and validates it.
func ParseSpec(text string) (Spec, error) {
	parts := strings.Split(text, ":")
	if len(parts) != 4 || !strings.HasPrefix(parts[1], "k=") || !strings.HasPrefix(parts[2], "seed=") || !strings.HasPrefix(parts[3], "v") {
		return Spec{}, fmt.Errorf("%w: %q is not method:k=K:seed=S:vN", ErrInvalidSpec, text)
	}
	k, err := strconv.Atoi(parts[1][2:])
	if err != nil {
		return Spec{}, fmt.Errorf("%w: %q: k: %v", ErrInvalidSpec, text, err)
	}
	seed, err := strconv.ParseUint(parts[2][5:], 10, 64)
	if err != nil {
		return Spec{}, fmt.Errorf("%w: %q: seed: %v", ErrInvalidSpec, text, err)
	}
	v, err := strconv.Atoi(parts[3][1:])
	if err != nil {
		return Spec{}, fmt.Errorf("%w: %q: version: %v", ErrInvalidSpec, text, err)
	}
	s := Spec{Method: Method(parts[0]), K: k, Seed: seed, Version: v}
	if s.String() != text {
		return Spec{}, fmt.Errorf("%w: %q is not in canonical form (%q)", ErrInvalidSpec, text, s.String())
	}
	return s, s.Validate()
}

// Check returns an error wrapping ErrSpecMismatch unless o equals s.
func (s Spec) Check(o Spec) error {
	if s != o {
		return fmt.Errorf("%w: %s vs %s", ErrSpecMismatch, s, o)
	}
	return nil
}

// --- the generator (docs/SKETCH.md §Generator) ---

const (
	golden   = 0x9E3779B97F4A7C15 // SplitMix64 increment
	fnvBasis = 0xcbf29ce484222325
	fnvPrime = 0x100000001b3
)

// mix is the SplitMix64 output function.
func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// sm returns output n (0-based) of a SplitMix64 generator whose state starts
// at key: counter-based, so output n needs no earlier outputs.
func sm(key, n uint64) uint64 { return mix(key + (n+1)*golden) }

// fnv1a64 hashes the parameter name's UTF-8 bytes.
func fnv1a64(s string) uint64 {
	h := uint64(fnvBasis)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// ParamKey is the per-parameter key: sm(seed XOR fnv1a64(param), 0).
func ParamKey(seed uint64, param string) uint64 { return sm(seed^fnv1a64(param), 0) }

// bucketSign maps one generator output to (bucket, sign): the low 63 bits,
// scaled to [0, K) by a 64x64->128 multiply, pick the bucket; bit 63 the sign.
func bucketSign(x uint64, k uint64) (int, uint32) {
	hi, _ := bits.Mul64(x<<1, k)
	return int(hi), uint32(x>>63) << 31
}

// Bucket returns column j's bucket and sign for parameter param (countsketch
// contract): x = sm(ParamKey(seed,param), j); bucket = floor((x mod 2^63)·K/2^63);
// sign = -1 if x >= 2^63 else +1. j < 0 gives (0, 0).
func (s Spec) Bucket(param string, j int) (bucket int, sign float32) {
	if j < 0 || s.K < 1 {
		return 0, 0
	}
	b, neg := bucketSign(sm(ParamKey(s.Seed, param), uint64(j)), uint64(s.K))
	if neg != 0 {
		return b, -1
	}
	return b, 1
}

// GaussianColumn writes column j of S restricted to param (rows 0..K-1) into
// dst[:min(len(dst), K)]. Entries are N(0, 1/K) rounded to float32; the
// construction (Box–Muller on a counter-based uniform pair) is in
// docs/SKETCH.md. j < 0 writes zeros.
func (s Spec) GaussianColumn(param string, j int, dst []float32) {
	if j < 0 || s.K < 1 {
		clear(dst)
		return
	}
	gaussianColumn(sm(ParamKey(s.Seed, param), uint64(j)), s.K, dst)
}

// gaussianColumn fills dst with the first min(len(dst), k) entries of the
// column whose key is ck. Rows 2m and 2m+1 share the uniform pair
// (sm(ck, 2m), sm(ck, 2m+1)).
func gaussianColumn(ck uint64, k int, dst []float32) {
	n := min(len(dst), k)
	scale := math.Sqrt(float64(k))
	for r := 0; r < n; r += 2 {
		a := sm(ck, uint64(r))
		b := sm(ck, uint64(r+1))
		u1 := float64((a>>11)+1) * 0x1p-53 // (0, 1]: log is finite
		u2 := float64(b>>11) * 0x1p-53     // [0, 1)
		rad := math.Sqrt(-2 * math.Log(u1))
		th := 2 * math.Pi * u2
		// Sincos gives the same bits as separate Sin and Cos (same reduction
		// and polynomials in Go's math package) at about half the cost.
		sin, cos := math.Sincos(th)
		dst[r] = float32(rad * cos / scale)
		if r+1 < n {
			dst[r+1] = float32(rad * sin / scale)
		}
	}
}
