package pcgrad_test

import (
	"fmt"

	"github.com/congrad-beam/congrad/congrad/pcgrad"
)

// Two conflicting languages: each direction loses its component along the
// other, and the consensus is the sum of what remains.
func ExampleConsensus() {
	r, err := pcgrad.Consensus(map[string][]float32{"de": {-1, 1}, "en": {1, 0}}, 0)
	if err != nil {
		panic(err)
	}
	fmt.Println(r.Langs, r.Projected, r.Consensus, r.Projections)
	fmt.Printf("cos(de,en) = %.4f\n", r.Cosine[0][1])
	// Output:
	// [de en] [[0 1] [0.5 0.5]] [0.5 1.5] 2
	// cos(de,en) = -0.7071
}
