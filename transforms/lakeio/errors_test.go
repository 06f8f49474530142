package lakeio

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/schemas/schematest"
)

// runErr runs a pipeline that must fail and checks the error names every
// fragment (path, columns, cause).
func runErr(t *testing.T, p *beam.Pipeline, fragments ...string) {
	t.Helper()
	err := ptest.Run(p)
	if err == nil {
		t.Fatalf("pipeline succeeded, want an error naming %q", fragments)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error does not name %q:\n%v", f, err)
		}
	}
}

func writeParquet(t *testing.T, path string, sc *arrow.Schema, fill func(b *array.RecordBuilder)) {
	t.Helper()
	b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer b.Release()
	fill(b)
	rec := b.NewRecordBatch()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tbl := array.NewTableFromRecords(sc, []arrow.RecordBatch{rec})
	if err := pqarrow.WriteTable(tbl, f, 10, parquet.NewWriterProperties(), pqarrow.DefaultWriterProps()); err != nil {
		t.Fatal(err)
	}
}

func TestReadErrorsAtStart(t *testing.T) {
	dir := t.TempDir()

	t.Run("no match", func(t *testing.T) {
		p, s := beam.NewPipelineWithRoot()
		ReadPrompts(s, dir+"/none-*.jsonl", ReadOptions{})
		runErr(t, p, "matched no files", dir+"/none-*.jsonl")
	})

	t.Run("not parquet", func(t *testing.T) {
		bad := filepath.Join(dir, "garbage.parquet")
		os.WriteFile(bad, []byte("this is not parquet at all"), 0o644)
		p, s := beam.NewPipelineWithRoot()
		ReadPrompts(s, bad, ReadOptions{})
		runErr(t, p, bad, "not a Parquet file")
	})

	t.Run("prompt columns", func(t *testing.T) {
		path := filepath.Join(dir, "wrongcols.parquet")
		sc := arrow.NewSchema([]arrow.Field{
			{Name: "id", Type: arrow.PrimitiveTypes.Int64},
			{Name: "text", Type: arrow.BinaryTypes.String},
		}, nil)
		writeParquet(t, path, sc, func(b *array.RecordBuilder) {
			b.Field(0).(*array.Int64Builder).Append(1)
			b.Field(1).(*array.StringBuilder).Append("x")
		})
		p, s := beam.NewPipelineWithRoot()
		ReadPrompts(s, path, ReadOptions{})
		runErr(t, p, path, "missing columns lang, prompt", "id: got int64")
	})

	t.Run("pairs from decisions", func(t *testing.T) {
		prefix := filepath.Join(dir, "decisions")
		p, s := beam.NewPipelineWithRoot()
		Write(s, prefix, beam.CreateList(s, schematest.Decisions(5)), WriteOptions{Shards: 1})
		if err := ptest.Run(p); err != nil {
			t.Fatal(err)
		}
		p, s = beam.NewPipelineWithRoot()
		ReadPairs(s, prefix+"-*.parquet", ReadOptions{})
		runErr(t, p, ShardName(prefix, 0, 1, Parquet), "missing columns", "chosen", "prompt_id")
	})

	t.Run("sketch spec mismatch", func(t *testing.T) {
		prefix := filepath.Join(dir, "sk")
		p, s := beam.NewPipelineWithRoot()
		Write(s, prefix, beam.CreateList(s, schematest.Sketches(4, 4)), WriteOptions{Shards: 1, SketchK: 4, SketchSpec: "v1"})
		if err := ptest.Run(p); err != nil {
			t.Fatal(err)
		}
		p, s = beam.NewPipelineWithRoot()
		ReadSketches(s, prefix+"-*.parquet", ReadOptions{SketchSpec: "v2"})
		runErr(t, p, ShardName(prefix, 0, 1, Parquet), `sketch spec "v1", want "v2"`)
	})
}

func TestConstructionErrors(t *testing.T) {
	_, s := beam.NewPipelineWithRoot()
	strs := beam.Create(s, "a", "b")
	if _, err := TryWrite(s, "/tmp/x", strs, WriteOptions{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Write of strings: got %v, want ErrUnsupported", err)
	}
	sk := beam.CreateList(s, schematest.Sketches(1, 2))
	if _, err := TryWrite(s, "/tmp/x", sk, WriteOptions{}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("Write of sketches without k: got %v, want ErrBadOptions", err)
	}
	pairs := beam.CreateList(s, schematest.Pairs(1))
	if _, err := TryWrite(s, "/tmp/x", pairs, WriteOptions{Shards: -1}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("Shards=-1: got %v, want ErrBadOptions", err)
	}
	if _, err := TryWrite(s, "nosuch://bucket/x", pairs, WriteOptions{}); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("unknown scheme: got %v", err)
	}
	if _, _, err := TryReadPrompts(s, " ", ReadOptions{}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("empty glob: got %v, want ErrBadOptions", err)
	}
	if _, err := TryRead(s, "/tmp/*.jsonl", reflect.TypeFor[schemas.Pair](), ReadOptions{Format: JSONL}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("pairs from JSONL: got %v, want ErrUnsupported", err)
	}
}
