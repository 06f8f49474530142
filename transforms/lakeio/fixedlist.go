package lakeio

import (
	"context"
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// A sketch file's values column is fixed_size_list<float>[k]: k floats per
// row, stored in Parquet as a repeated leaf with a definition and a
// repetition level per float. pqarrow's generic list reader walks those
// levels value by value to find row boundaries and build offsets and
// validity, which costs about as much as decoding the floats themselves.
// When a row group's column statistics show no nulls and exactly k values
// per row, EachBatch reads that leaf with the column chunk reader instead:
// the floats land in one buffer per batch that becomes the list's child
// array as it is, and the levels are only checked (every definition level
// at its maximum, a repetition level of 0 exactly at each row start). Other
// columns are still read by pqarrow, and the batches are the same records
// (schema, values, row counts) as the generic path's, which a test checks.

// directFixedList enables the direct read (tests compare both paths).
var directFixedList = true

// fixedList describes the column read directly.
type fixedList struct {
	field  int // top-level field index in the file's Arrow schema
	leaf   int // Parquet leaf column index
	k      int
	typ    arrow.DataType
	maxDef int16
}

// fixedFloatList reports whether sp's row groups qualify for the direct
// read of a fixed_size_list<float32> column; at most one such column is
// read directly (a sketch file has one).
func fixedFloatList(pf *file.Reader, fr *pqarrow.FileReader, sp Split) (fixedList, bool) {
	for i, f := range fr.Manifest.Fields {
		lt, ok := f.Field.Type.(*arrow.FixedSizeListType)
		if !ok || !arrow.TypeEqual(lt.Elem(), arrow.PrimitiveTypes.Float32) || len(f.Children) != 1 || !f.Children[0].IsLeaf() {
			continue
		}
		leaf := f.Children[0].ColIndex
		d := pf.MetaData().Schema.Column(leaf)
		if d.PhysicalType() != parquet.Types.Float || d.MaxRepetitionLevel() != 1 || lt.Len() <= 0 {
			continue
		}
		k := int64(lt.Len())
		for g := sp.Start; g < sp.End; g++ {
			rg := pf.MetaData().RowGroup(int(g))
			cc, err := rg.ColumnChunk(leaf)
			if err != nil {
				return fixedList{}, false
			}
			set, err := cc.StatsSet()
			if err != nil || !set {
				return fixedList{}, false
			}
			st, err := cc.Statistics()
			if err != nil || st == nil || !st.HasNullCount() || st.NullCount() != 0 || cc.NumValues() != rg.NumRows()*k {
				return fixedList{}, false
			}
		}
		return fixedList{field: i, leaf: leaf, k: int(k), typ: f.Field.Type, maxDef: d.MaxDefinitionLevel()}, true
	}
	return fixedList{}, false
}

// eachBatchFixedList is eachRowGroupBatch with fl's column read directly.
func eachBatchFixedList(ctx context.Context, pf *file.Reader, fr *pqarrow.FileReader, sp Split, fl fixedList, fn func(rec arrow.RecordBatch) error) error {
	var others []int
	for c := 0; c < pf.MetaData().Schema.NumColumns(); c++ {
		if c != fl.leaf {
			others = append(others, c)
		}
	}
	var groups []int
	for g := sp.Start; g < sp.End; g++ {
		groups = append(groups, int(g))
	}
	if len(others) == 0 {
		return eachRowGroupBatch(ctx, pf, fr, sp, nil, fn)
	}
	rr, err := fr.GetRecordReader(ctx, others, groups)
	if err != nil {
		return fmt.Errorf("%w %s: row groups %v: %v", ErrUnreadable, sp.Path, groups, err)
	}
	defer rr.Release()
	osc := rr.Schema()
	fields := append([]arrow.Field{}, osc.Fields()[:fl.field]...)
	fields = append(fields, *fr.Manifest.Fields[fl.field].Field)
	fields = append(fields, osc.Fields()[fl.field:]...)
	md := osc.Metadata()
	schema := arrow.NewSchema(fields, &md)

	src := &floatLeaf{pf: pf, leaf: fl.leaf, groups: groups, maxDef: fl.maxDef, k: fl.k, path: sp.Path}
	for rr.Next() {
		rec := rr.RecordBatch()
		n := int(rec.NumRows())
		vals, err := src.read(n)
		if err != nil {
			return err
		}
		child := array.NewData(arrow.PrimitiveTypes.Float32, n*fl.k, []*memory.Buffer{nil, memory.NewBufferBytes(arrow.Float32Traits.CastToBytes(vals))}, nil, 0, 0)
		ld := array.NewData(fl.typ, n, []*memory.Buffer{nil}, []arrow.ArrayData{child}, 0, 0)
		list := array.MakeFromData(ld)
		child.Release()
		ld.Release()
		cols := make([]arrow.Array, 0, len(fields))
		cols = append(cols, rec.Columns()[:fl.field]...)
		cols = append(cols, list)
		cols = append(cols, rec.Columns()[fl.field:]...)
		out := array.NewRecordBatch(schema, cols, int64(n))
		list.Release()
		err = fn(out)
		out.Release()
		if err != nil {
			return err
		}
	}
	if err := rr.Err(); err != nil && err != io.EOF {
		return fmt.Errorf("%w %s: %v", ErrUnreadable, sp.Path, err)
	}
	if err := src.done(); err != nil {
		return err
	}
	return nil
}

// floatLeaf reads one float leaf column across row groups, k values per row.
type floatLeaf struct {
	pf       *file.Reader
	leaf     int
	groups   []int
	maxDef   int16
	k        int
	path     string
	cr       *file.Float32ColumnChunkReader
	def, rep []int16
	vals     []float32 // reused by every read
}

// levelChunk bounds the level buffers: levels are read and checked this
// many values at a time, whatever the batch size.
const levelChunk = 1 << 16

// read returns the next n rows' n*k values, checking their levels. The
// slice is overwritten by the next read.
func (s *floatLeaf) read(n int) ([]float32, error) {
	want := n * s.k
	// One buffer for every batch: the record built on it is only valid
	// during EachBatch's fn (as pqarrow's own records are), and allocating
	// 8 MB per batch cost more in zeroing than the decode of the levels.
	if cap(s.vals) < want {
		s.vals = make([]float32, want)
	}
	vals := s.vals[:want]
	if s.def == nil {
		s.def, s.rep = make([]int16, levelChunk), make([]int16, levelChunk)
	}
	got := 0
	for got < want {
		if s.cr == nil || !s.cr.HasNext() {
			if len(s.groups) == 0 {
				return nil, fmt.Errorf("%w %s: column %d ends after %d of %d values", ErrUnreadable, s.path, s.leaf, got, want)
			}
			c, err := s.pf.RowGroup(s.groups[0]).Column(s.leaf)
			if err != nil {
				return nil, fmt.Errorf("%w %s: row group %d column %d: %v", ErrUnreadable, s.path, s.groups[0], s.leaf, err)
			}
			cr, ok := c.(*file.Float32ColumnChunkReader)
			if !ok {
				return nil, fmt.Errorf("%w %s: column %d is not a float column", ErrUnreadable, s.path, s.leaf)
			}
			s.cr, s.groups = cr, s.groups[1:]
			continue
		}
		chunk := min(want-got, levelChunk)
		lv, nv, err := s.cr.ReadBatch(int64(chunk), vals[got:got+chunk], s.def[:chunk], s.rep[:chunk])
		if err != nil {
			return nil, fmt.Errorf("%w %s: column %d: %v", ErrUnreadable, s.path, s.leaf, err)
		}
		if int(lv) != nv {
			return nil, fmt.Errorf("%w %s: column %d has null values, which its statistics deny", ErrUnreadable, s.path, s.leaf)
		}
		if i := badLevel(s.def[:nv], s.rep[:nv], s.maxDef, got%s.k, s.k); i >= 0 {
			return nil, fmt.Errorf("%w %s: column %d: value %d is not in a full list of %d", ErrUnreadable, s.path, s.leaf, got+i, s.k)
		}
		got += nv
		if lv == 0 {
			if s.cr.HasNext() {
				return nil, fmt.Errorf("%w %s: column %d: no progress reading values", ErrUnreadable, s.path, s.leaf)
			}
			s.cr = nil
		}
	}
	return vals, nil
}

// badLevel returns the index of the first value whose levels do not put it
// in a full list of k (definition level below maxDef, or a repetition level
// that starts a list anywhere but at a multiple of k), or -1. pos is the
// first value's position in its list.
//
// Values that must continue a list are checked eight at a time without a
// branch per value (the value-by-value loop ran at about a quarter of the
// leaf's decode time); a group with anything wrong, and every list start,
// goes through the exact check.
func badLevel(def, rep []int16, maxDef int16, pos, k int) int {
	rep = rep[:len(def)]
	for i := 0; i < len(def); {
		if pos != 0 {
			// Within a list: def == maxDef and rep != 0 for the next
			// min(k-pos, ...) values. (r | -r) >> 15 is -1 for r != 0 and
			// 0 for r == 0, so the AND of a group is -1 only if none is 0.
			end := i + min(k-pos, len(def)-i)
			for ; i+8 <= end; i += 8 {
				d, r := def[i:i+8:i+8], rep[i:i+8:i+8]
				diff := (d[0] ^ maxDef) | (d[1] ^ maxDef) | (d[2] ^ maxDef) | (d[3] ^ maxDef) |
					(d[4] ^ maxDef) | (d[5] ^ maxDef) | (d[6] ^ maxDef) | (d[7] ^ maxDef)
				nz := ((r[0] | -r[0]) >> 15) & ((r[1] | -r[1]) >> 15) & ((r[2] | -r[2]) >> 15) & ((r[3] | -r[3]) >> 15) &
					((r[4] | -r[4]) >> 15) & ((r[5] | -r[5]) >> 15) & ((r[6] | -r[6]) >> 15) & ((r[7] | -r[7]) >> 15)
				if diff != 0 || nz != -1 {
					break
				}
				pos += 8
			}
			if pos == k {
				pos = 0
			}
		}
		if i == len(def) {
			break
		}
		if def[i] != maxDef || (rep[i] == 0) != (pos == 0) {
			return i
		}
		i++
		if pos++; pos == k {
			pos = 0
		}
	}
	return -1
}

// done checks that the leaf has no values beyond the rows read.
func (s *floatLeaf) done() error {
	more := s.cr != nil && s.cr.HasNext()
	for _, g := range s.groups {
		more = more || s.pf.MetaData().RowGroup(g).NumRows() > 0
	}
	if more {
		return fmt.Errorf("%w %s: column %d has more values than the other columns have rows", ErrUnreadable, s.path, s.leaf)
	}
	return nil
}
