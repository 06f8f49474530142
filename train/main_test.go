package train

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/congrad-beam/congrad/gpu/model"
)

func writePairs(t *testing.T, path string, cols []string, rows [][]string) {
	t.Helper()
	var fields []arrow.Field
	for _, c := range cols {
		fields = append(fields, arrow.Field{Name: c, Type: arrow.BinaryTypes.String, Nullable: true})
	}
	schema := arrow.NewSchema(fields, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for _, r := range rows {
		for i, v := range r {
			if v == "<null>" {
				b.Field(i).(*array.StringBuilder).AppendNull()
			} else {
				b.Field(i).(*array.StringBuilder).Append(v)
			}
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	tbl := array.NewTableFromRecords(schema, []arrow.RecordBatch{rec})
	defer tbl.Release()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pqarrow.WriteTable(tbl, f, 1024, nil, pqarrow.DefaultWriterProps()); err != nil {
		t.Fatal(err)
	}
}

func TestReadPairsParquetAndMain(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "kept.parquet")
	var rows [][]string
	for i, p := range testPairs(12, 4) {
		rows = append(rows, []string{p.Prompt, p.Chosen, p.Rejected, "de", string(rune('a' + i))})
	}
	writePairs(t, in, []string{"prompt", "chosen", "rejected", "lang", "pair_id"}, rows)
	ps, err := ReadPairsParquet(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 12 || ps[3].Chosen != rows[3][1] || ps[3].Lang != "de" || ps[3].ID != "d" {
		t.Fatalf("read back %d pairs, pair 3 = %+v", len(ps), ps[3])
	}
	out := filepath.Join(dir, "lora.safetensors")
	var log bytes.Buffer
	if err := Main(context.Background(), []string{"--pairs", in, "--out", out, "--steps", "3", "--batch", "4"}, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	ts, meta, err := model.ReadSafetensors(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 4*TinyConfig().Layers || meta["congrad.lora_rank"] == "" {
		t.Errorf("adapters file: %d tensors, meta %v", len(ts), meta)
	}
}

func TestReadPairsParquetBadColumns(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.parquet")
	writePairs(t, missing, []string{"prompt", "chosen"}, [][]string{{"a", "b"}})
	if _, err := ReadPairsParquet(context.Background(), missing); !errors.Is(err, ErrColumns) {
		t.Errorf("missing column: want ErrColumns, got %v", err)
	}
	null := filepath.Join(dir, "null.parquet")
	writePairs(t, null, []string{"prompt", "chosen", "rejected"}, [][]string{{"a", "<null>", "c"}})
	if _, err := ReadPairsParquet(context.Background(), null); !errors.Is(err, ErrColumns) {
		t.Errorf("null cell: want ErrColumns, got %v", err)
	}
	if _, err := ReadPairsParquet(context.Background(), filepath.Join(dir, "nope.parquet")); err == nil {
		t.Error("missing file: want an error")
	}
	if err := Main(context.Background(), []string{"--pairs", missing}, &bytes.Buffer{}); err == nil {
		t.Error("Main without --out: want an error")
	}
}
