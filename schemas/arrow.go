package schemas

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// Keys of the Arrow schema metadata that every file we write carries. Parquet
// files get them too: pqarrow copies schema metadata into the file's key-value
// metadata and, with the store-schema option, into the serialized ARROW:schema.
const (
	MetaSchemaVersion = "congrad.schema_version"
	MetaRecordType    = "congrad.record_type"
	MetaSketchSpec    = "congrad.sketch_spec"
)

// Codec converts between a record type T and Arrow record batches. One codec
// value describes one file layout (for example a sketch codec knows k and the
// sketch spec), so a codec is also what a writer and a reader agree on.
//
// Codecs hold only plain option fields so they can be serialized into Beam
// DoFns as they are.
type Codec[T any] interface {
	// Name is the record type written to MetaRecordType ("pair", "sketch", ...).
	Name() string
	// Schema is the Arrow schema of the files, with metadata.
	Schema() *arrow.Schema
	// Append appends rows column by column to b, whose schema is Schema().
	Append(b *array.RecordBuilder, rows []T) error
	// Decode checks rec's columns and converts every row. Extra columns are
	// ignored so files may carry more than this version knows.
	Decode(rec arrow.RecordBatch) ([]T, error)
	// Check reports a *SchemaError when s lacks a column Decode needs or has
	// it with another type.
	Check(s *arrow.Schema) error
	// Key is the stable row key used for shard assignment and sort order.
	Key(row *T) string
}

// SchemaError says which columns of a file do not match what a codec needs.
// Callers add the path (the codec does not know it).
type SchemaError struct {
	Record   string   // codec name
	Missing  []string // required columns that are absent
	Mistyped []string // "col: got TYPE, want TYPE"
	Other    string   // anything else (wrong fixed-list size, nulls, ...)
}

func (e *SchemaError) Error() string {
	var parts []string
	if len(e.Missing) > 0 {
		parts = append(parts, "missing columns "+strings.Join(e.Missing, ", "))
	}
	if len(e.Mistyped) > 0 {
		parts = append(parts, "mistyped columns "+strings.Join(e.Mistyped, "; "))
	}
	if e.Other != "" {
		parts = append(parts, e.Other)
	}
	return fmt.Sprintf("%s schema: %s", e.Record, strings.Join(parts, "; "))
}

// column is a required column: its name and the types Decode accepts.
type column struct {
	name  string
	types []arrow.DataType // first is what we write
}

func col(name string, types ...arrow.DataType) column { return column{name, types} }

// stringTypes are accepted wherever we write utf8: other writers (pyarrow,
// polars) often produce large_string.
var stringTypes = []arrow.DataType{arrow.BinaryTypes.String, arrow.BinaryTypes.LargeString}

var (
	f64   = arrow.PrimitiveTypes.Float64
	i64   = arrow.PrimitiveTypes.Int64
	f64s  = arrow.ListOf(arrow.PrimitiveTypes.Float64)
	boolT = arrow.FixedWidthTypes.Boolean
)

func strCol(name string) column { return column{name, stringTypes} }

// checkColumns compares s with the required columns.
func checkColumns(record string, s *arrow.Schema, cols []column) error {
	e := &SchemaError{Record: record}
	for _, c := range cols {
		idx := s.FieldIndices(c.name)
		if len(idx) == 0 {
			e.Missing = append(e.Missing, c.name)
			continue
		}
		got := s.Field(idx[0]).Type
		ok := false
		for _, t := range c.types {
			if arrow.TypeEqual(got, t) {
				ok = true
				break
			}
		}
		if !ok {
			e.Mistyped = append(e.Mistyped, fmt.Sprintf("%s: got %s, want %s", c.name, got, c.types[0]))
		}
	}
	if len(e.Missing) > 0 || len(e.Mistyped) > 0 {
		return e
	}
	return nil
}

// metadata builds the schema metadata common to every record type, plus extra
// key/value pairs, with keys sorted so schemas (and files) are byte-stable.
func metadata(record string, extra ...string) arrow.Metadata {
	kv := map[string]string{
		MetaSchemaVersion: strconv.Itoa(SchemaVersion),
		MetaRecordType:    record,
	}
	for i := 0; i+1 < len(extra); i += 2 {
		kv[extra[i]] = extra[i+1]
	}
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	vals := make([]string, len(keys))
	for i, k := range keys {
		vals[i] = kv[k]
	}
	return arrow.NewMetadata(keys, vals)
}

// fields turns required columns into schema fields, all non-nullable unless
// listed in nullable.
func fields(cols []column, nullable ...string) []arrow.Field {
	out := make([]arrow.Field, len(cols))
	for i, c := range cols {
		n := false
		for _, x := range nullable {
			if x == c.name {
				n = true
			}
		}
		out[i] = arrow.Field{Name: c.name, Type: c.types[0], Nullable: n}
	}
	return out
}

// reader gives typed access to the columns of one record batch and remembers
// the first problem, so Decode functions read as a list of columns.
type reader struct {
	rec    arrow.RecordBatch
	record string
	err    error
}

func (r *reader) arr(name string) arrow.Array {
	idx := r.rec.Schema().FieldIndices(name)
	if len(idx) == 0 {
		r.fail(&SchemaError{Record: r.record, Missing: []string{name}})
		return nil
	}
	return r.rec.Column(idx[0])
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// noNulls rejects nulls in columns our writers never leave null: a null there
// means a foreign or damaged file, and guessing "" or 0 would hide it.
func (r *reader) noNulls(name string, a arrow.Array) bool {
	if a.NullN() > 0 {
		r.fail(&SchemaError{Record: r.record, Other: fmt.Sprintf("column %s has %d null values", name, a.NullN())})
		return false
	}
	return true
}

type stringValuer interface{ Value(int) string }

func (r *reader) strings(name string, set func(i int, v string)) {
	a := r.arr(name)
	if a == nil || !r.noNulls(name, a) {
		return
	}
	sv, ok := a.(stringValuer)
	if !ok {
		r.fail(&SchemaError{Record: r.record, Mistyped: []string{fmt.Sprintf("%s: got %s, want utf8", name, a.DataType())}})
		return
	}
	for i := 0; i < a.Len(); i++ {
		set(i, sv.Value(i))
	}
}

func (r *reader) int64s(name string, set func(i int, v int64)) {
	a := r.arr(name)
	if a == nil || !r.noNulls(name, a) {
		return
	}
	x, ok := a.(*array.Int64)
	if !ok {
		r.fail(&SchemaError{Record: r.record, Mistyped: []string{fmt.Sprintf("%s: got %s, want int64", name, a.DataType())}})
		return
	}
	for i, v := range x.Int64Values() {
		set(i, v)
	}
}

// float64s reads a float64 column; nulls become NaN when nullOK (the
// reserved reference log-prob columns are null until the gradient stage).
func (r *reader) float64s(name string, nullOK bool, set func(i int, v float64)) {
	a := r.arr(name)
	if a == nil || (!nullOK && !r.noNulls(name, a)) {
		return
	}
	x, ok := a.(*array.Float64)
	if !ok {
		r.fail(&SchemaError{Record: r.record, Mistyped: []string{fmt.Sprintf("%s: got %s, want double", name, a.DataType())}})
		return
	}
	for i := 0; i < x.Len(); i++ {
		if x.IsNull(i) {
			set(i, nan)
		} else {
			set(i, x.Value(i))
		}
	}
}

func (r *reader) bools(name string, set func(i int, v bool)) {
	a := r.arr(name)
	if a == nil || !r.noNulls(name, a) {
		return
	}
	x, ok := a.(*array.Boolean)
	if !ok {
		r.fail(&SchemaError{Record: r.record, Mistyped: []string{fmt.Sprintf("%s: got %s, want bool", name, a.DataType())}})
		return
	}
	for i := 0; i < x.Len(); i++ {
		set(i, x.Value(i))
	}
}

func (r *reader) float64Lists(name string, set func(i int, v []float64)) {
	a := r.arr(name)
	if a == nil || !r.noNulls(name, a) {
		return
	}
	l, ok := a.(*array.List)
	if !ok {
		r.fail(&SchemaError{Record: r.record, Mistyped: []string{fmt.Sprintf("%s: got %s, want list<double>", name, a.DataType())}})
		return
	}
	vals, ok := l.ListValues().(*array.Float64)
	if !ok {
		r.fail(&SchemaError{Record: r.record, Mistyped: []string{fmt.Sprintf("%s: got %s, want list<double>", name, a.DataType())}})
		return
	}
	for i := 0; i < l.Len(); i++ {
		start, end := l.ValueOffsets(i)
		if end == start {
			set(i, nil) // nil, not []float64{}: what Beam's coders give back for an empty slice
			continue
		}
		v := make([]float64, end-start)
		for j := range v {
			v[j] = vals.Value(int(start) + j)
		}
		set(i, v)
	}
}

// Builder helpers: one type assertion per column, then a tight loop.

func appendStrings[T any](b *array.RecordBuilder, i int, rows []T, get func(*T) string) {
	sb := b.Field(i).(*array.StringBuilder)
	sb.Reserve(len(rows))
	for k := range rows {
		sb.Append(get(&rows[k]))
	}
}

func appendInt64s[T any](b *array.RecordBuilder, i int, rows []T, get func(*T) int64) {
	ib := b.Field(i).(*array.Int64Builder)
	ib.Reserve(len(rows))
	for k := range rows {
		ib.UnsafeAppend(get(&rows[k]))
	}
}

func appendFloat64s[T any](b *array.RecordBuilder, i int, rows []T, get func(*T) float64) {
	fb := b.Field(i).(*array.Float64Builder)
	fb.Reserve(len(rows))
	for k := range rows {
		fb.UnsafeAppend(get(&rows[k]))
	}
}

// appendNullableFloat64s writes NaN as null: "not computed yet" must read as
// missing in pandas/DuckDB, not as a number.
func appendNullableFloat64s[T any](b *array.RecordBuilder, i int, rows []T, get func(*T) float64) {
	fb := b.Field(i).(*array.Float64Builder)
	fb.Reserve(len(rows))
	for k := range rows {
		v := get(&rows[k])
		if v != v {
			fb.UnsafeAppendBoolToBitmap(false)
		} else {
			fb.UnsafeAppend(v)
		}
	}
}

func appendBools[T any](b *array.RecordBuilder, i int, rows []T, get func(*T) bool) {
	bb := b.Field(i).(*array.BooleanBuilder)
	bb.Reserve(len(rows))
	for k := range rows {
		bb.UnsafeAppend(get(&rows[k]))
	}
}

func appendFloat64Lists[T any](b *array.RecordBuilder, i int, rows []T, get func(*T) []float64) {
	lb := b.Field(i).(*array.ListBuilder)
	vb := lb.ValueBuilder().(*array.Float64Builder)
	for k := range rows {
		lb.Append(true)
		vb.AppendValues(get(&rows[k]), nil)
	}
}
