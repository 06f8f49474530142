package lakeio

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/schemas/schematest"
)

func writePairs(t *testing.T, prefix string, rows []schemas.Pair, opts WriteOptions) {
	t.Helper()
	p, s := beam.NewPipelineWithRoot()
	files := WritePairs(s, prefix, beam.CreateList(s, rows), opts)
	var want []string
	for i := 0; i < opts.Shards; i++ {
		want = append(want, ShardName(prefix, i, opts.Shards, opts.Format))
	}
	passert.EqualsList(s, files, want)
	if err := ptest.Run(p); err != nil {
		t.Fatalf("write %s: %v", prefix, err)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

// TestWriteDeterministic: the same rows in another order give byte-identical
// files, every row sits in shard fnv64a(PairID) mod n, sorted by PairID.
func TestWriteDeterministic(t *testing.T) {
	rows := schematest.Pairs(500)
	// Duplicate ids with different content: the tie-break must still give
	// one order.
	for i := 0; i < 20; i++ {
		d := rows[i]
		d.Chosen += " (duplicate)"
		rows = append(rows, d)
	}
	reversed := append([]schemas.Pair(nil), rows...)
	for i, j := 0, len(reversed)-1; i < j; i, j = i+1, j-1 {
		reversed[i], reversed[j] = reversed[j], reversed[i]
	}
	a, b, c, spill := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	opts := WriteOptions{Shards: 4, RowGroupRows: 50}
	writePairs(t, a+"/pairs", rows, opts)
	writePairs(t, b+"/pairs", reversed, opts)
	// Batches through spill files instead of the shuffle: the same bytes,
	// and nothing left in the spill directory.
	spilled := opts
	spilled.SpillDir = spill
	writePairs(t, c+"/pairs", reversed, spilled)
	if left := dirNames(t, spill); len(left) != 0 {
		t.Errorf("spill directory not cleaned up: %v", left)
	}
	total := 0
	for i := 0; i < 4; i++ {
		name := filepath.Base(ShardName("pairs", i, 4, Parquet))
		x, err := os.ReadFile(filepath.Join(a, name))
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(filepath.Join(b, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between runs (%d vs %d bytes)", name, len(x), len(y))
		}
		z, err := os.ReadFile(filepath.Join(c, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x, z) {
			t.Errorf("%s differs with SpillDir (%d vs %d bytes)", name, len(x), len(z))
		}
		ids := pairIDs(t, filepath.Join(a, name))
		if !sort.StringsAreSorted(ids) {
			t.Errorf("%s: rows not sorted by pair_id", name)
		}
		for _, id := range ids {
			if shardOf(id, 4) != i {
				t.Errorf("%s holds %s, whose shard is %d", name, id, shardOf(id, 4))
			}
		}
		total += len(ids)
	}
	if total != len(rows) {
		t.Errorf("%d rows in files, wrote %d", total, len(rows))
	}
}

// pairIDs reads the pair_id column with plain pqarrow (not through lakeio).
func pairIDs(t *testing.T, path string) []string {
	t.Helper()
	pf, err := file.OpenParquetFile(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Release()
	idx := tbl.Schema().FieldIndices("pair_id")
	var out []string
	for _, c := range tbl.Column(idx[0]).Data().Chunks() {
		s := c.(*array.String)
		for i := 0; i < s.Len(); i++ {
			out = append(out, s.Value(i))
		}
	}
	return out
}

// TestRewriteRemovesStaleShards: a rerun with fewer shards leaves only its
// own files; leftovers of a crashed write go too; a longer prefix that
// starts with ours and the other format are not touched.
func TestRewriteRemovesStaleShards(t *testing.T) {
	dir := t.TempDir()
	prefix := dir + "/pairs"
	writePairs(t, prefix, schematest.Pairs(40), WriteOptions{Shards: 5})
	writePairs(t, prefix+"-dropped", schematest.Pairs(10), WriteOptions{Shards: 2})
	writePairs(t, prefix, schematest.Pairs(10), WriteOptions{Shards: 1, Format: ArrowIPC})
	os.WriteFile(ShardName(prefix, 1, 3, Parquet)+".tmp-0a1b2c", []byte("partial"), 0o644)

	writePairs(t, prefix, schematest.Pairs(40), WriteOptions{Shards: 3})
	want := []string{
		"pairs-00000-of-00001.arrow",
		"pairs-00000-of-00003.parquet", "pairs-00001-of-00003.parquet", "pairs-00002-of-00003.parquet",
		"pairs-dropped-00000-of-00002.parquet", "pairs-dropped-00001-of-00002.parquet",
	}
	if got := dirNames(t, dir); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("files after rerun:\n got %v\nwant %v", got, want)
	}
	p, s := beam.NewPipelineWithRoot()
	passert.Count(s, ReadPairs(s, ShardGlob(prefix, Parquet), ReadOptions{}), "pairs", 40)
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}
}

// TestWriteEmpty: no rows still gives every shard file (empty, with the
// schema), so downstream globs and readers see a complete, valid set.
func TestWriteEmpty(t *testing.T) {
	dir := t.TempDir()
	prefix := dir + "/none"
	p, s := beam.NewPipelineWithRoot()
	empty := beam.CreateList(s, []schemas.Decision{})
	files := Write(s, prefix, empty, WriteOptions{Shards: 2})
	passert.Count(s, files, "files", 2)
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}
	p, s = beam.NewPipelineWithRoot()
	passert.Empty(s, ReadDecisions(s, prefix+"-*.parquet", ReadOptions{}))
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}
}

// TestSketchValuesByteStreamSplit: sketch files store the values in
// BYTE_STREAM_SPLIT without a dictionary (ParquetProps), the other columns
// keep the default encodings, and the values read back unchanged.
func TestSketchValuesByteStreamSplit(t *testing.T) {
	if got := splitFloatLeaves(schemas.SketchCodec{K: testK, Spec: testSpec}.Schema()); len(got) != 1 || got[0] != "values.list.element" {
		t.Fatalf("float list leaves of the sketch schema: %q", got)
	}
	if got := splitFloatLeaves(schemas.PairCodec{}.Schema()); len(got) != 0 {
		t.Fatalf("float list leaves of the pair schema: %q", got)
	}
	dir := t.TempDir()
	sketches := schematest.Sketches(300, testK)
	p, s := beam.NewPipelineWithRoot()
	Write(s, dir+"/sketches", beam.CreateList(s, sketches), WriteOptions{Shards: 1, RowGroupRows: 100, SketchK: testK, SketchSpec: testSpec})
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}
	path := ShardName(dir+"/sketches", 0, 1, Parquet)
	pf, err := file.OpenParquetFile(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	sc := pf.MetaData().Schema
	for rg := 0; rg < pf.NumRowGroups(); rg++ {
		for c := 0; c < sc.NumColumns(); c++ {
			cc, err := pf.MetaData().RowGroup(rg).ColumnChunk(c)
			if err != nil {
				t.Fatal(err)
			}
			var encs []string
			for _, e := range cc.Encodings() {
				encs = append(encs, e.String())
			}
			bss := slices.Contains(encs, "BYTE_STREAM_SPLIT")
			if sc.Column(c).Path() == "values.list.element" {
				if !bss || cc.HasDictionaryPage() {
					t.Errorf("row group %d values: encodings %v, dictionary page %v", rg, encs, cc.HasDictionaryPage())
				}
			} else if bss {
				t.Errorf("row group %d %s: encodings %v", rg, sc.Column(c).Path(), encs)
			}
		}
	}
	got := map[string][]float32{}
	if err := EachBatch(context.Background(), Split{Path: path, Format: Parquet, End: int64(pf.NumRowGroups())}, nil, 64, func(rec arrow.RecordBatch) error {
		rows, err := schemas.SketchCodec{K: testK, Spec: testSpec}.Decode(rec)
		for _, r := range rows {
			got[r.PairID] = r.Values
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, sk := range sketches {
		if !slices.Equal(got[sk.PairID], sk.Values) {
			t.Fatalf("%s: values %v, wrote %v", sk.PairID, got[sk.PairID], sk.Values)
		}
	}
}

// Spilled batch names are read back only from the Write's own spill
// directory, and a missing file is an error, not a silently smaller shard.
func TestUnspillRejects(t *testing.T) {
	dir := t.TempDir()
	c, _ := codecFor(codecOpts{Kind: "pair"})
	buf := c.newBuffer().(*typedRows[schemas.Pair])
	for _, p := range schematest.Pairs(5) {
		buf.add(p)
	}
	ok, err := buf.spill(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(dir, "00000-2.arrow")
	if err := os.WriteFile(corrupt, []byte("batch"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, want string }{
		{ok, ""},
		{filepath.Join(filepath.Dir(dir), filepath.Base(ok)), "is not in"},
		{filepath.Join(dir, "missing.arrow"), "read spilled batch"},
		{corrupt, "spilled batch " + corrupt},
	} {
		rows := 0
		err := unspill(dir, iterOf([][]byte{[]byte(tc.name)}), func(rec arrow.RecordBatch) error {
			rows += int(rec.NumRows())
			return nil
		})
		switch {
		case tc.want == "" && (err != nil || rows != 5):
			t.Errorf("%s: rows=%d err=%v, want 5 rows", tc.name, rows, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || rows != 0):
			t.Errorf("%s: rows=%d err=%v, want an error containing %q", tc.name, rows, err, tc.want)
		}
	}
	if _, err := (WriteOptions{SpillDir: "relative/dir"}).withDefaults(); err == nil {
		t.Error("relative SpillDir accepted")
	}
	if _, err := (WriteOptions{SpillDir: "gs://b/spill"}).withDefaults(); err == nil {
		t.Error("gs:// SpillDir accepted")
	}
}
