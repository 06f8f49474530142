package keep_test

import (
	"fmt"
	"math"

	"github.com/congrad-beam/congrad/congrad/keep"
)

func ExampleDecide() {
	items := []keep.Scored{
		{PairID: "p1", Lang: "en", Score: 0.4},
		{PairID: "p2", Lang: "en", Score: -0.2},
		{PairID: "p3", Lang: "de", Score: -0.1},
		{PairID: "p4", Lang: "de", Score: math.NaN()},
	}
	vs, err := keep.Decide(items, keep.Options{Rule: keep.Top, Rho: 0.5})
	if err != nil {
		panic(err)
	}
	for _, v := range vs {
		fmt.Println(v.Lang, v.PairID, v.Rank, v.Kept, v.Reason)
	}
	// Output:
	// de p3 1 true in top-rho
	// de p4 0 false non-finite score
	// en p1 1 true in top-rho
	// en p2 2 false below top-rho
}
