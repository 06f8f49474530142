package schemas_test

import (
	"testing"

	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/schemas/schematest"
)

func TestDroppedRoundTrip(t *testing.T) {
	var rows []schemas.Dropped
	for i, p := range schematest.Pairs(30) {
		rows = append(rows, schemas.Dropped{Pair: p, Score: float64(i)/30 - 0.5, Rank: i + 1, Reason: "score<=tau"})
	}
	roundTrip(t, schemas.DroppedCodec{}, rows)
	roundTrip(t, schemas.DroppedCodec{Conversational: true}, rows)
	// A dropped file is also a pair file.
	if err := (schemas.PairCodec{}).Check(schemas.DroppedCodec{}.Schema()); err != nil {
		t.Fatal(err)
	}
}
