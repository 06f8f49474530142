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

// Of reads vs as an iterator-style input: each call copies the next value
// into *v and reports whether there was one (the reverse of Drain, for
// side data carried in an element instead of a side input).
func Of[T any](vs []T) func(*T) bool {
	i := 0
	return func(v *T) bool {
		if i >= len(vs) {
			return false
		}
		*v = vs[i]
		i++
		return true
	}
}
