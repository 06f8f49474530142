package schemas

import (
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// Dropped is a pair the conflict filter dropped, with the verdict that
// dropped it, so a dropped file says why without a join with decisions.
type Dropped struct {
	Pair   Pair
	Score  float64 // cos(s_i, g*)
	Rank   int     // 1-based rank within the pair's language
	Reason string  // the keep rule's reason, e.g. "score<=tau"
}

// DroppedCodec is the layout of dropped-pair files: every pair column (as
// PairCodec writes them) followed by score, rank and reason.
type DroppedCodec struct {
	Conversational bool
}

var droppedCols = []column{col("score", f64), col("rank", i64), strCol("reason")}

func (DroppedCodec) Name() string { return "dropped" }

func (c DroppedCodec) Schema() *arrow.Schema {
	ps := PairCodec{Conversational: c.Conversational}.Schema()
	fs := append(append([]arrow.Field{}, ps.Fields()...), fields(droppedCols)...)
	md := metadata("dropped", "congrad.pair_form", map[bool]string{false: "standard", true: "conversational"}[c.Conversational])
	return arrow.NewSchema(fs, &md)
}

func (c DroppedCodec) Check(s *arrow.Schema) error {
	if err := (PairCodec{}).Check(s); err != nil {
		return err
	}
	return checkColumns("dropped", s, droppedCols)
}

func (DroppedCodec) Key(d *Dropped) string { return d.Pair.PairID }

func (c DroppedCodec) Append(b *array.RecordBuilder, rows []Dropped) error {
	pairs := make([]Pair, len(rows))
	for i := range rows {
		pairs[i] = rows[i].Pair
	}
	if err := (PairCodec{Conversational: c.Conversational}).Append(b, pairs); err != nil {
		return err
	}
	n := len(PairCodec{}.Schema().Fields())
	appendFloat64s(b, n, rows, func(d *Dropped) float64 { return d.Score })
	appendInt64s(b, n+1, rows, func(d *Dropped) int64 { return int64(d.Rank) })
	appendStrings(b, n+2, rows, func(d *Dropped) string { return d.Reason })
	return nil
}

func (c DroppedCodec) Decode(rec arrow.RecordBatch) ([]Dropped, error) {
	if err := c.Check(rec.Schema()); err != nil {
		return nil, err
	}
	pairs, err := PairCodec{}.Decode(rec)
	if err != nil {
		return nil, err
	}
	out := make([]Dropped, len(pairs))
	for i := range pairs {
		out[i].Pair = pairs[i]
	}
	r := &reader{rec: rec, record: "dropped"}
	r.float64s("score", false, func(i int, v float64) { out[i].Score = v })
	r.int64s("rank", func(i int, v int64) { out[i].Rank = int(v) })
	r.strings("reason", func(i int, v string) { out[i].Reason = v })
	return out, r.err
}
