package lakeio

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/compute"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Rows travel from shardFn to the shard writer as Arrow IPC blobs: the
// record's own columns plus one extra utf8 column holding each row's codec
// key. The writer sorts on that column and reorders the other columns with
// Arrow's take kernel, so rows are never decoded back into Go structs just
// to be sorted and encoded again.

const keyColumn = "__lakeio_key"

// encodeBlob encodes rec plus its key column as one LZ4-compressed IPC
// stream; sizeHint (the size of the previous blob) presizes the output.
func encodeBlob(rec arrow.RecordBatch, keys arrow.Array, sizeHint int) ([]byte, error) {
	withKey := keyed(rec, keys)
	defer withKey.Release()
	var out bytes.Buffer
	out.Grow(sizeHint + sizeHint/8)
	w := ipc.NewWriter(&out, ipc.WithSchema(withKey.Schema()), ipc.WithLZ4())
	if err := w.Write(withKey); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// keyed is rec with keys appended as the column keyColumn.
func keyed(rec arrow.RecordBatch, keys arrow.Array) arrow.RecordBatch {
	fields := append(rec.Schema().Fields(), arrow.Field{Name: keyColumn, Type: arrow.BinaryTypes.String})
	md := rec.Schema().Metadata()
	sc := arrow.NewSchema(fields, &md)
	cols := append(append([]arrow.Array{}, rec.Columns()...), keys)
	return array.NewRecordBatch(sc, cols, rec.NumRows())
}

// eachBlobBatch calls fn with the record batches of the shuffle blobs.
func eachBlobBatch(blobs func(*[]byte) bool, fn func(arrow.RecordBatch) error) error {
	var blob []byte
	for blobs(&blob) {
		r, err := ipc.NewReader(bytes.NewReader(blob))
		if err != nil {
			return err
		}
		for err == nil && r.Next() {
			err = fn(r.RecordBatch())
		}
		if err == nil {
			err = r.Err()
		}
		r.Release()
		if err != nil && err != io.EOF {
			return err
		}
	}
	return nil
}

// arrowRows is a shard as concatenated columns plus the sorted row order.
type arrowRows struct {
	schema *arrow.Schema
	cols   []arrow.Array
	order  []int64
}

func (r *arrowRows) len() int { return len(r.order) }

func (r *arrowRows) record(lo, hi int) (arrow.RecordBatch, error) {
	ib := array.NewInt64Builder(memory.DefaultAllocator)
	defer ib.Release()
	ib.AppendValues(r.order[lo:hi], nil)
	idx := ib.NewArray()
	defer idx.Release()
	out := make([]arrow.Array, len(r.cols))
	for i, c := range r.cols {
		t, err := compute.TakeArray(context.Background(), c, idx)
		if err != nil {
			for _, o := range out[:i] {
				o.Release()
			}
			return nil, fmt.Errorf("reorder column %s: %w", r.schema.Field(i).Name, err)
		}
		out[i] = t
	}
	rec := array.NewRecordBatch(r.schema, out, int64(hi-lo))
	for _, o := range out {
		o.Release()
	}
	return rec, nil
}

// sortBatches gathers a shard's shuffle batches (each calls its argument
// once per batch; a batch is only read during that call) and returns the
// rows ordered by key, ties ordered by tieKey of the single tied row.
func sortBatches(schema *arrow.Schema, each func(func(arrow.RecordBatch) error) error, tieKey func(arrow.RecordBatch) (string, error)) (rowSet, error) {
	n := len(schema.Fields())
	parts := make([][]arrow.Array, n)
	var keys []string
	err := each(func(rec arrow.RecordBatch) error {
		if int(rec.NumCols()) != n+1 || rec.Schema().Field(n).Name != keyColumn {
			return fmt.Errorf("shuffle batch has %d columns, want %d plus %s", rec.NumCols(), n, keyColumn)
		}
		for i := 0; i < n; i++ {
			c := rec.Column(i)
			c.Retain()
			parts[i] = append(parts[i], c)
		}
		k := rec.Column(n).(*array.String)
		for i := 0; i < k.Len(); i++ {
			keys = append(keys, k.Value(i))
		}
		return nil
	})
	if err != nil {
		for _, p := range parts {
			for _, c := range p {
				c.Release()
			}
		}
		return nil, err
	}
	rows := &arrowRows{schema: schema, cols: make([]arrow.Array, n), order: make([]int64, len(keys))}
	for i := range parts {
		if len(parts[i]) == 0 {
			rows.cols[i] = array.MakeArrayOfNull(memory.DefaultAllocator, schema.Field(i).Type, 0)
			continue
		}
		c, err := array.Concatenate(parts[i], memory.DefaultAllocator)
		for _, p := range parts[i] {
			p.Release()
		}
		if err != nil {
			return nil, fmt.Errorf("concatenate column %s: %w", schema.Field(i).Name, err)
		}
		rows.cols[i] = c
	}
	for i := range rows.order {
		rows.order[i] = int64(i)
	}
	var tieErr error
	ties := map[int64]string{}
	tieOf := func(i int64) string {
		if s, ok := ties[i]; ok {
			return s
		}
		cols := make([]arrow.Array, n)
		for c := range cols {
			cols[c] = array.NewSlice(rows.cols[c], i, i+1)
		}
		rec := array.NewRecordBatch(schema, cols, 1)
		s, err := tieKey(rec)
		rec.Release()
		for _, c := range cols {
			c.Release()
		}
		if err != nil && tieErr == nil {
			tieErr = err
		}
		ties[i] = s
		return s
	}
	sort.Slice(rows.order, func(a, b int) bool {
		ia, ib := rows.order[a], rows.order[b]
		if keys[ia] != keys[ib] {
			return keys[ia] < keys[ib]
		}
		return tieOf(ia) < tieOf(ib)
	})
	if tieErr != nil {
		return nil, tieErr
	}
	return rows, nil
}
