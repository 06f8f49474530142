package beamiter

import (
	"reflect"
	"testing"
)

func iter[T any](vs []T) func(*T) bool {
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

func TestDrain(t *testing.T) {
	type rec struct {
		ID string
		N  int
	}
	in := []rec{{"a", 1}, {"b", 2}, {"c", 3}}
	if got := Drain(iter(in)); !reflect.DeepEqual(got, in) {
		t.Fatalf("Drain = %v, want %v", got, in)
	}
	if got := Drain(iter[rec](nil)); len(got) != 0 {
		t.Fatalf("Drain(empty) = %v, want none", got)
	}
}
