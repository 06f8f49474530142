package lakeio

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/congrad-beam/congrad/schemas/schematest"
)

// batchesOf reads sp with EachBatch, direct fixed-list read on or off, and
// returns copies of the record batches.
func batchesOf(t *testing.T, sp Split, batchRows int, direct bool) []arrow.RecordBatch {
	t.Helper()
	old := directFixedList
	directFixedList = direct
	defer func() { directFixedList = old }()
	var out []arrow.RecordBatch
	err := EachBatch(context.Background(), sp, nil, batchRows, func(rec arrow.RecordBatch) error {
		// A copy: the batch's buffers are only valid during fn.
		cols := make([]arrow.Array, rec.NumCols())
		for i, c := range rec.Columns() {
			cp, err := array.Concatenate([]arrow.Array{c}, memory.DefaultAllocator)
			if err != nil {
				return err
			}
			cols[i] = cp
		}
		out = append(out, array.NewRecordBatch(rec.Schema(), cols, rec.NumRows()))
		for _, c := range cols {
			c.Release()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEachBatchDirectFixedList: reading a sketch file's values column
// directly gives the same batches (schema with metadata, every value, row
// counts) as pqarrow's generic path, for splits of one and several row
// groups and batch sizes that do and do not divide them.
func TestEachBatchDirectFixedList(t *testing.T) {
	const k = 48 // batches of 4096 rows span several level chunks
	c, _ := codecFor(codecOpts{Kind: "sketch", K: k, Spec: "test-spec"})
	b := c.newBuffer()
	for _, s := range schematest.Sketches(2500, k) {
		b.add(s)
	}
	path := filepath.Join(t.TempDir(), "sk.parquet")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := encode(c, b.(rowSet), f, shardParams{Format: Parquet, RowGroupRows: 1000}); err != nil {
		t.Fatal(err)
	}
	pf, fr, cl, err := openParquet(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fixedFloatList(pf, fr, Split{Path: path, Format: Parquet, Start: 0, End: 3}); !ok {
		t.Fatal("a sketch file written by lakeio does not qualify for the direct read")
	}
	cl.Close()
	for _, sp := range []Split{{Start: 0, End: 1}, {Start: 1, End: 3}, {Start: 0, End: 3}, {Start: 2, End: 3}} {
		sp.Path, sp.Format = path, Parquet
		for _, rows := range []int{7, 256, 1000, 4096} {
			name := fmt.Sprintf("groups %d-%d batch %d", sp.Start, sp.End, rows)
			got, want := batchesOf(t, sp, rows, true), batchesOf(t, sp, rows, false)
			if len(got) != len(want) {
				t.Fatalf("%s: %d batches, generic path %d", name, len(got), len(want))
			}
			for i := range got {
				if !got[i].Schema().Equal(want[i].Schema()) || !got[i].Schema().Metadata().Equal(want[i].Schema().Metadata()) {
					t.Fatalf("%s batch %d: schema\n%v\nwant\n%v", name, i, got[i].Schema(), want[i].Schema())
				}
				if !array.RecordEqual(got[i], want[i]) {
					t.Fatalf("%s batch %d: records differ", name, i)
				}
				got[i].Release()
				want[i].Release()
			}
		}
	}
}

// A split outside the file's row groups is an error naming the file and
// the range, not a panic (the file has 3 row groups).
func TestEachBatchSplitOutOfRange(t *testing.T) {
	c, _ := codecFor(codecOpts{Kind: "sketch", K: 4, Spec: "test-spec"})
	b := c.newBuffer()
	for _, s := range schematest.Sketches(25, 4) {
		b.add(s)
	}
	path := filepath.Join(t.TempDir(), "sk.parquet")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := encode(c, b.(rowSet), f, shardParams{Format: Parquet, RowGroupRows: 10}); err != nil {
		t.Fatal(err)
	}
	for _, sp := range []Split{{Start: 0, End: 4}, {Start: -1, End: 1}, {Start: 2, End: 1}} {
		sp.Path, sp.Format = path, Parquet
		for _, cols := range [][]string{nil, {"pair_id"}} {
			err := EachBatch(context.Background(), sp, cols, 8, func(arrow.RecordBatch) error { return nil })
			if !errors.Is(err, ErrUnreadable) || !strings.Contains(err.Error(), "the file has 3") {
				t.Errorf("split [%d, %d) cols %v: err = %v", sp.Start, sp.End, cols, err)
			}
		}
	}
}

// TestEachBatchFixedListWithNulls: a fixed-size-list column holding a null
// (another writer's file) is not read directly; the generic path reads it.
func TestEachBatchFixedListWithNulls(t *testing.T) {
	lt := arrow.FixedSizeListOf(3, arrow.PrimitiveTypes.Float32)
	sc := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.BinaryTypes.String}, {Name: "values", Type: lt, Nullable: true}}, nil)
	rb := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer rb.Release()
	lb := rb.Field(1).(*array.FixedSizeListBuilder)
	vb := lb.ValueBuilder().(*array.Float32Builder)
	for i := 0; i < 10; i++ {
		rb.Field(0).(*array.StringBuilder).Append(fmt.Sprint(i))
		lb.Append(true)
		vb.AppendValues([]float32{float32(i), 1, 2}, []bool{true, i != 4, true}) // row 4 holds a null
	}
	rec := rb.NewRecordBatch()
	defer rec.Release()
	path := filepath.Join(t.TempDir(), "nulls.parquet")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := pqarrow.NewFileWriter(sc, f, parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Zstd)), pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	sp := Split{Path: path, Format: Parquet, Start: 0, End: 1}
	pf, fr, cl, err := openParquet(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, ok := fixedFloatList(pf, fr, sp); ok {
		t.Fatal("a column with a null value qualifies for the direct read")
	}
	got := batchesOf(t, sp, 4, true)
	n := 0
	for _, r := range got {
		n += int(r.NumRows())
		if r.Column(1).(*array.FixedSizeList).ListValues().NullN() > 0 {
			n += 1000
		}
		r.Release()
	}
	if n != 1010 {
		t.Fatalf("read %d rows (+1000 per batch with the null), want 10 rows and the null kept", n)
	}
}

// TestBadLevel: the level check of the direct read finds a value outside a
// full list of k, wherever the batch starts within a list.
func TestBadLevel(t *testing.T) {
	const k, maxDef = 3, 1
	levels := func(n int) (def, rep []int16) {
		def, rep = make([]int16, n), make([]int16, n)
		for i := range n {
			def[i] = maxDef
			if i%k != 0 {
				rep[i] = 1
			}
		}
		return def, rep
	}
	def, rep := levels(12)
	for start := range 12 {
		if i := badLevel(def[start:], rep[start:], maxDef, start%k, k); i != -1 {
			t.Fatalf("start %d: full lists reported bad at %d", start, i)
		}
	}
	def[7] = 0
	if i := badLevel(def, rep, maxDef, 0, k); i != 7 {
		t.Fatalf("null at 7: got %d", i)
	}
	def, rep = levels(12)
	rep[5] = 0 // a list of 2 followed by one of 4: same total, wrong rows
	if i := badLevel(def, rep, maxDef, 0, k); i != 5 {
		t.Fatalf("early list start at 5: got %d", i)
	}
	def, rep = levels(12)
	rep[6] = 1 // a list running past k
	if i := badLevel(def, rep, maxDef, 0, k); i != 6 {
		t.Fatalf("missing list start at 6: got %d", i)
	}
	if i := badLevel(def[1:], rep[1:], maxDef, 0, k); i != 0 {
		t.Fatalf("batch said to start a list where it does not: got %d", i)
	}
}

// badLevelPlain is badLevel's definition, value by value.
func badLevelPlain(def, rep []int16, maxDef int16, pos, k int) int {
	for i := range def {
		if def[i] != maxDef || (rep[i] == 0) != ((pos+i)%k == 0) {
			return i
		}
	}
	return -1
}

// TestBadLevelMatchesDefinition: on random batches (short lists, and lists
// long enough for several groups of the eight-at-a-time check; any start
// within a list; up to three corrupted levels, including repetition levels
// other than 0 and 1) badLevel finds the same first bad value as the
// value-by-value definition.
func TestBadLevelMatchesDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 1))
	const maxDef = 2
	for trial := range 40000 {
		k := 1 + rng.IntN(9)
		if trial%2 == 0 {
			k = 8 + rng.IntN(40)
		}
		n := rng.IntN(4 * k)
		pos := rng.IntN(k)
		def, rep := make([]int16, n), make([]int16, n)
		for i := range n {
			def[i] = maxDef
			if (pos+i)%k != 0 {
				rep[i] = 1
			}
		}
		for c := rng.IntN(4); c > 0 && n > 0; c-- {
			i := rng.IntN(n)
			switch rng.IntN(4) {
			case 0:
				def[i] = int16(rng.IntN(maxDef))
			case 1:
				def[i] = int16(rng.IntN(1 << 16))
			case 2:
				rep[i] = 1 - rep[i]
			default:
				rep[i] = int16(rng.IntN(1 << 16)) // -32768 .. 32767, 0 included
			}
		}
		if got, want := badLevel(def, rep, maxDef, pos, k), badLevelPlain(def, rep, maxDef, pos, k); got != want {
			t.Fatalf("trial %d (k=%d pos=%d def=%v rep=%v): badLevel %d, definition %d", trial, k, pos, def, rep, got, want)
		}
	}
}

// BenchmarkBadLevel: the level check over one batch of 64 full lists of
// 2048 values, as select reads sketches.
func BenchmarkBadLevel(b *testing.B) {
	const k, lists, maxDef = 2048, 64, 1
	def, rep := make([]int16, k*lists), make([]int16, k*lists)
	for i := range def {
		def[i] = maxDef
		if i%k != 0 {
			rep[i] = 1
		}
	}
	b.SetBytes(int64(len(def)))
	for b.Loop() {
		if badLevel(def, rep, maxDef, 0, k) != -1 {
			b.Fatal("full lists reported bad")
		}
	}
}
