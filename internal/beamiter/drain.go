// Package beamiter holds helpers for Beam Go's iterator-style inputs
// (GroupByKey/CoGroupByKey values and iterable side inputs).
package beamiter

// Drain reads every value next yields, in order. Each element is a copy of
// the struct the iterator decoded into, the same as the hand-written loop
// `var v T; for next(&v) { out = append(out, v) }`.
func Drain[T any](next func(*T) bool) []T {
	var out []T
	var v T
	for next(&v) {
		out = append(out, v)
	}
	return out
}
