package schemas

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// SketchCodec is the layout of sketch files. Values is fixed_size_list<float>[K]
// so readers get a dense k-column matrix without per-row offsets; the sketch
// Spec (the text that identifies method, k, seed and version) is stored in the
// schema metadata under MetaSketchSpec, so a file says how its sketches were
// made and sketches from different specs are never mixed silently.
//
// For writing, K must be > 0. For reading, K == 0 accepts any fixed size and
// Spec == "" accepts any spec; set them to insist on a match.
type SketchCodec struct {
	K    int
	Spec string
}

var sketchCols = []column{
	strCol("pair_id"), strCol("lang"), col("step", i64),
	col("norm", f64), col("loss", f64), col("z", f64),
	col("ref_chosen_logps", f64), col("ref_rejected_logps", f64),
	col("chosen_tokens", i64), col("rejected_tokens", i64),
}

func (SketchCodec) Name() string { return "sketch" }

func (c SketchCodec) valuesType() arrow.DataType {
	return arrow.FixedSizeListOfNonNullable(int32(c.K), arrow.PrimitiveTypes.Float32)
}

func (c SketchCodec) Schema() *arrow.Schema {
	fs := fields(sketchCols[:3])
	fs = append(fs, arrow.Field{Name: "values", Type: c.valuesType()})
	fs = append(fs, fields(sketchCols[3:], "ref_chosen_logps", "ref_rejected_logps")...)
	md := metadata("sketch", MetaSketchSpec, c.Spec)
	return arrow.NewSchema(fs, &md)
}

func (c SketchCodec) Check(s *arrow.Schema) error {
	e := &SchemaError{Record: "sketch"}
	if err := checkColumns("sketch", s, sketchCols); err != nil {
		e = err.(*SchemaError)
	}
	idx := s.FieldIndices("values")
	if len(idx) == 0 {
		e.Missing = append(e.Missing, "values")
	} else if ft, ok := s.Field(idx[0]).Type.(*arrow.FixedSizeListType); !ok || !arrow.TypeEqual(ft.Elem(), arrow.PrimitiveTypes.Float32) {
		e.Mistyped = append(e.Mistyped, fmt.Sprintf("values: got %s, want fixed_size_list<float>[k]", s.Field(idx[0]).Type))
	} else if c.K > 0 && int(ft.Len()) != c.K {
		e.Other = fmt.Sprintf("values has k=%d, want k=%d", ft.Len(), c.K)
	}
	if c.Spec != "" {
		if got, ok := s.Metadata().GetValue(MetaSketchSpec); ok && got != c.Spec {
			e.Other = fmt.Sprintf("sketch spec %q, want %q", got, c.Spec)
		}
	}
	if len(e.Missing) > 0 || len(e.Mistyped) > 0 || e.Other != "" {
		return e
	}
	return nil
}

func (SketchCodec) Key(s *Sketch) string { return s.PairID }

func (c SketchCodec) Append(b *array.RecordBuilder, rows []Sketch) error {
	if c.K <= 0 {
		return fmt.Errorf("sketch codec: K must be > 0 to write, got %d", c.K)
	}
	for k := range rows {
		if len(rows[k].Values) != c.K {
			return fmt.Errorf("sketch %q has %d values, codec k=%d", rows[k].PairID, len(rows[k].Values), c.K)
		}
	}
	appendStrings(b, 0, rows, func(s *Sketch) string { return s.PairID })
	appendStrings(b, 1, rows, func(s *Sketch) string { return s.Lang })
	appendInt64s(b, 2, rows, func(s *Sketch) int64 { return s.Step })
	lb := b.Field(3).(*array.FixedSizeListBuilder)
	vb := lb.ValueBuilder().(*array.Float32Builder)
	vb.Reserve(len(rows) * c.K)
	for k := range rows {
		lb.Append(true)
		vb.AppendValues(rows[k].Values, nil)
	}
	appendFloat64s(b, 4, rows, func(s *Sketch) float64 { return s.Norm })
	appendFloat64s(b, 5, rows, func(s *Sketch) float64 { return s.Loss })
	appendFloat64s(b, 6, rows, func(s *Sketch) float64 { return s.Z })
	appendNullableFloat64s(b, 7, rows, func(s *Sketch) float64 { return s.RefChosenLogp })
	appendNullableFloat64s(b, 8, rows, func(s *Sketch) float64 { return s.RefRejectedLogp })
	appendInt64s(b, 9, rows, func(s *Sketch) int64 { return int64(s.ChosenTokens) })
	appendInt64s(b, 10, rows, func(s *Sketch) int64 { return int64(s.RejectedTokens) })
	return nil
}

func (c SketchCodec) Decode(rec arrow.RecordBatch) ([]Sketch, error) { return c.decode(rec, true) }

// DecodeView is Decode without copying the values: each Sketch's Values
// aliases rec's float buffer, so it is valid only while rec's buffers are
// (for lakeio.EachBatch, until its fn returns). For passes that read each
// sketch once and keep nothing of its values.
func (c SketchCodec) DecodeView(rec arrow.RecordBatch) ([]Sketch, error) { return c.decode(rec, false) }

func (c SketchCodec) decode(rec arrow.RecordBatch, copyValues bool) ([]Sketch, error) {
	if err := c.Check(rec.Schema()); err != nil {
		return nil, err
	}
	out := make([]Sketch, rec.NumRows())
	r := &reader{rec: rec, record: "sketch"}
	r.strings("pair_id", func(i int, v string) { out[i].PairID = v })
	r.strings("lang", func(i int, v string) { out[i].Lang = v })
	r.int64s("step", func(i int, v int64) { out[i].Step = v })
	if a := r.arr("values"); a != nil && r.noNulls("values", a) {
		l := a.(*array.FixedSizeList)
		k := int(l.DataType().(*arrow.FixedSizeListType).Len())
		vals := l.ListValues().(*array.Float32).Float32Values()
		base := l.Data().Offset() * k
		// One backing slice for the whole batch: a million small allocations
		// would dominate reading time.
		buf := vals[base : base+len(out)*k]
		if copyValues {
			buf = make([]float32, len(out)*k)
			copy(buf, vals[base:base+len(out)*k])
		}
		for i := range out {
			out[i].Values = buf[i*k : (i+1)*k : (i+1)*k]
		}
	}
	r.float64s("norm", false, func(i int, v float64) { out[i].Norm = v })
	r.float64s("loss", false, func(i int, v float64) { out[i].Loss = v })
	r.float64s("z", false, func(i int, v float64) { out[i].Z = v })
	r.float64s("ref_chosen_logps", true, func(i int, v float64) { out[i].RefChosenLogp = v })
	r.float64s("ref_rejected_logps", true, func(i int, v float64) { out[i].RefRejectedLogp = v })
	r.int64s("chosen_tokens", func(i int, v int64) { out[i].ChosenTokens = int(v) })
	r.int64s("rejected_tokens", func(i int, v int64) { out[i].RejectedTokens = int(v) })
	return out, r.err
}
