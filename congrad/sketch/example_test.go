package sketch_test

import (
	"fmt"

	"github.com/congrad-beam/congrad/congrad/sketch"
)

// A gradient arrives in named blocks of any size; the sketch does not depend
// on the split.
func ExampleSketcher() {
	spec := sketch.Spec{Method: sketch.CountSketch, K: 4, Seed: 1, Version: sketch.Version}
	sk, err := sketch.New(spec)
	if err != nil {
		panic(err)
	}
	_ = sk.Add("a", 3, []float32{4, 5, 6}) // a[3:6]
	_ = sk.Add("b", 0, []float32{0.5, -1, 0.25})
	_ = sk.Add("a", 0, []float32{1, 2, 3}) // a[0:3], later
	fmt.Println(spec, sk.Sketch())
	// Output: countsketch:k=4:seed=1:v1 [0.25 0 -2 0]
}
