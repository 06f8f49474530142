package beamiter

import (
	"reflect"
	"testing"
)

func TestDrain(t *testing.T) {
	type rec struct {
		ID string
		N  int
	}
	in := []rec{{"a", 1}, {"b", 2}, {"c", 3}}
	if got := Drain(Of(in)); !reflect.DeepEqual(got, in) {
		t.Fatalf("Drain = %v, want %v", got, in)
	}
	if got := Drain(Of[rec](nil)); len(got) != 0 {
		t.Fatalf("Drain(empty) = %v, want none", got)
	}
}
