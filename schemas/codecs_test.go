package schemas_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/schemas/schematest"
)

// same compares with NaN == NaN, which is what a round trip must preserve.
func same[T any](a, b []T) error {
	if len(a) != len(b) {
		return fmt.Errorf("len %d != %d", len(a), len(b))
	}
	for i := range a {
		x, y := fmt.Sprintf("%#v", a[i]), fmt.Sprintf("%#v", b[i])
		if x != y {
			return fmt.Errorf("row %d:\n got %s\nwant %s", i, y, x)
		}
	}
	return nil
}

func roundTrip[T any](t *testing.T, c schemas.Codec[T], rows []T) arrow.RecordBatch {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	b := array.NewRecordBuilder(mem, c.Schema())
	defer b.Release()
	if err := c.Append(b, rows); err != nil {
		t.Fatalf("%s append: %v", c.Name(), err)
	}
	rec := b.NewRecordBatch()
	if err := c.Check(rec.Schema()); err != nil {
		t.Fatalf("%s: own schema fails check: %v", c.Name(), err)
	}
	got, err := c.Decode(rec)
	if err != nil {
		t.Fatalf("%s decode: %v", c.Name(), err)
	}
	if err := same(rows, got); err != nil {
		t.Fatalf("%s round trip: %v", c.Name(), err)
	}
	if v, _ := rec.Schema().Metadata().GetValue(schemas.MetaSchemaVersion); v != fmt.Sprint(schemas.SchemaVersion) {
		t.Errorf("%s: schema version metadata %q", c.Name(), v)
	}
	return rec
}

func TestRoundTripEverySchema(t *testing.T) {
	roundTrip(t, schemas.PromptCodec{}, schematest.Prompts(50))
	roundTrip(t, schemas.CandidateCodec{}, schematest.Candidates(50))
	roundTrip(t, schemas.PairCodec{}, schematest.Pairs(50))
	roundTrip(t, schemas.PairCodec{Conversational: true}, schematest.Pairs(50))
	rec := roundTrip(t, schemas.SketchCodec{K: 16, Spec: "countsketch/v1/k=16/seed=7"}, schematest.Sketches(50, 16))
	if v, _ := rec.Schema().Metadata().GetValue(schemas.MetaSketchSpec); v != "countsketch/v1/k=16/seed=7" {
		t.Errorf("sketch spec metadata %q", v)
	}
	roundTrip(t, schemas.DecisionCodec{}, schematest.Decisions(50))
	roundTrip(t, schemas.DeadLetterCodec{}, schematest.DeadLetters(50))
}

func TestPairTRLColumns(t *testing.T) {
	for _, conv := range []bool{false, true} {
		s := schemas.PairCodec{Conversational: conv}.Schema()
		for i, name := range []string{"prompt", "chosen", "rejected"} {
			f := s.Field(i)
			want := arrow.DataType(arrow.BinaryTypes.String)
			if conv {
				want = schemas.MessagesType
			}
			if f.Name != name || !arrow.TypeEqual(f.Type, want) {
				t.Errorf("conversational=%v: column %d is %s %s, want %s %s", conv, i, f.Name, f.Type, name, want)
			}
		}
		for _, name := range []string{"ref_chosen_logps", "ref_rejected_logps"} {
			if idx := s.FieldIndices(name); len(idx) != 1 || !s.Field(idx[0]).Nullable {
				t.Errorf("reserved column %s missing or not nullable", name)
			}
		}
	}
}

func TestCheckNamesColumns(t *testing.T) {
	s := arrow.NewSchema([]arrow.Field{
		{Name: "pair_id", Type: arrow.BinaryTypes.String},
		{Name: "lang", Type: arrow.PrimitiveTypes.Int32},
	}, nil)
	err := schemas.DecisionCodec{}.Check(s)
	var se *schemas.SchemaError
	if !errors.As(err, &se) {
		t.Fatalf("want *SchemaError, got %v", err)
	}
	for _, want := range []string{"score", "rank", "kept", "reason", "lang: got int32"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

func TestSketchCheck(t *testing.T) {
	s := schemas.SketchCodec{K: 8, Spec: "a"}.Schema()
	if err := (schemas.SketchCodec{K: 16}).Check(s); err == nil || !strings.Contains(err.Error(), "k=8") {
		t.Errorf("k mismatch not reported: %v", err)
	}
	if err := (schemas.SketchCodec{Spec: "b"}).Check(s); err == nil || !strings.Contains(err.Error(), "spec") {
		t.Errorf("spec mismatch not reported: %v", err)
	}
	if err := (schemas.SketchCodec{}).Check(s); err != nil {
		t.Errorf("zero codec should accept any k/spec: %v", err)
	}
	rows := schematest.Sketches(2, 4)
	b := array.NewRecordBuilder(memory.DefaultAllocator, s)
	defer b.Release()
	if err := (schemas.SketchCodec{K: 8}).Append(b, rows); err == nil {
		t.Error("appending k=4 sketches to a k=8 codec did not fail")
	}
}

func TestNullsRejected(t *testing.T) {
	b := array.NewRecordBuilder(memory.DefaultAllocator, schemas.DecisionCodec{}.Schema())
	defer b.Release()
	b.Field(0).(*array.StringBuilder).AppendNull()
	b.Field(1).(*array.StringBuilder).Append("en")
	b.Field(2).(*array.Float64Builder).Append(1)
	b.Field(3).(*array.Int64Builder).Append(1)
	b.Field(4).(*array.BooleanBuilder).Append(true)
	b.Field(5).(*array.StringBuilder).Append("x")
	rec := b.NewRecordBatch()
	if _, err := (schemas.DecisionCodec{}).Decode(rec); err == nil || !strings.Contains(err.Error(), "pair_id has 1 null") {
		t.Errorf("null pair_id not reported: %v", err)
	}
}

// TestSketchDecodeView: DecodeView gives the rows Decode gives, with the
// values aliasing the record (a slice of it too) instead of copied.
func TestSketchDecodeView(t *testing.T) {
	c := schemas.SketchCodec{K: 4, Spec: "a"}
	rows := schematest.Sketches(5, 4)
	b := array.NewRecordBuilder(memory.DefaultAllocator, c.Schema())
	defer b.Release()
	if err := c.Append(b, rows); err != nil {
		t.Fatal(err)
	}
	full := b.NewRecordBatch()
	defer full.Release()
	rec := full.NewSlice(1, 4)
	defer rec.Release()
	copied, err := c.Decode(rec)
	if err != nil {
		t.Fatal(err)
	}
	view, err := c.DecodeView(rec)
	if err != nil {
		t.Fatal(err)
	}
	// %v, not DeepEqual: the rows hold NaN reference log-probs.
	if len(view) != 3 || fmt.Sprint(view) != fmt.Sprint(copied) || fmt.Sprint(view) != fmt.Sprint(rows[1:4]) {
		t.Fatalf("DecodeView %+v\nDecode %+v\nwrote %+v", view, copied, rows[1:4])
	}
	vals := full.Column(full.Schema().FieldIndices("values")[0]).(*array.FixedSizeList).ListValues().(*array.Float32).Float32Values()
	vals[4] = 42 // row 1, value 0
	if view[0].Values[0] != 42 || copied[0].Values[0] == 42 {
		t.Errorf("after writing the record: view %v, copy %v (view must alias, copy must not)", view[0].Values[0], copied[0].Values[0])
	}
}
