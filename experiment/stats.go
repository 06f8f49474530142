package experiment

import (
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// tInterval is the mean of xs and its two-sided Student-t confidence
// interval at level (e.g. 0.95): mean ± t_{(1+level)/2, n−1}·s/√n. With
// fewer than two values the interval is NaN.
func tInterval(xs []float64, level float64) (mean, lo, hi float64) {
	m, s := meanStd(xs)
	if len(xs) < 2 {
		return m, math.NaN(), math.NaN()
	}
	q := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: float64(len(xs) - 1)}.Quantile((1 + level) / 2)
	h := q * s / math.Sqrt(float64(len(xs)))
	return m, m - h, m + h
}

// meanStd returns the mean and the sample standard deviation (0 for n < 2).
func meanStd(xs []float64) (mean, std float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN()
	}
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	if len(xs) < 2 {
		return mean, 0
	}
	for _, x := range xs {
		std += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(std / float64(len(xs)-1))
}

// pearson is the correlation of two equal-length series (NaN if degenerate).
func pearson(a, b []float64) float64 {
	if len(a) != len(b) || len(a) < 2 {
		return math.NaN()
	}
	ma, _ := meanStd(a)
	mb, _ := meanStd(b)
	var sab, saa, sbb float64
	for i := range a {
		sab += (a[i] - ma) * (b[i] - mb)
		saa += (a[i] - ma) * (a[i] - ma)
		sbb += (b[i] - mb) * (b[i] - mb)
	}
	if saa == 0 || sbb == 0 {
		return math.NaN()
	}
	return sab / math.Sqrt(saa*sbb)
}
