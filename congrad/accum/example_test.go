package accum_test

import (
	"fmt"

	"github.com/congrad-beam/congrad/congrad/accum"
)

// Partial means computed on different workers merge into the same bits as
// one accumulator that saw everything.
func ExampleMean() {
	a, b := accum.NewMean(2), accum.NewMean(2)
	_ = a.Add([]float32{1, 0.1})
	_ = b.Add([]float32{2, 0.2})
	_ = b.Add([]float32{4, 0.3})
	_ = a.Merge(b)
	m, _ := a.Result()
	fmt.Println(a.N, m)
	// Output: 3 [2.3333333 0.2]
}
