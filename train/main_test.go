package train

import (
	"bytes"
	"context"
	"errors"
	"io"
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
	if err := Main(context.Background(), []string{"--pairs", in, "--out", out, "--steps", "3", "--batch", "4"}, io.Discard, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	ts, meta, err := model.ReadSafetensors(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2*2*model.TinyConfig().NumHiddenLayers || meta["congrad.lora_rank"] != "8" || meta["congrad.model"] != "tiny:seed=0" {
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
	if err := Main(context.Background(), []string{"--pairs", missing}, io.Discard, &bytes.Buffer{}); err == nil {
		t.Error("Main without --out: want an error")
	}
}

// Any gpu/model config trains, not only the tiny model: a small Gemma-2
// checkpoint directory (sliding window, soft-capping, GeGLU) loaded by HF names.
func TestMainTrainsCheckpointDirectory(t *testing.T) {
	dir := t.TempDir()
	window, capA, capF := 4, 50.0, 30.0
	cfg, err := model.NewConfig(model.Config{ModelType: "gemma2", VocabSize: 259, HiddenSize: 16, IntermediateSize: 32,
		NumHiddenLayers: 2, NumAttentionHeads: 2, NumKeyValueHeads: 1, HeadDim: 8, MaxPositionEmbeddings: 32,
		SlidingWindow: &window, AttnLogitSoftcapping: &capA, FinalLogitSoftcapping: &capF,
		BOSTokenID: model.IDList{model.ByteBOS}, EOSTokenID: model.IDList{model.ByteEOS}, PadTokenID: model.IDList{model.BytePAD}})
	if err != nil {
		t.Fatal(err)
	}
	ckpt := filepath.Join(dir, "ckpt")
	m := &model.Model{Ref: "gemma2-test", Config: cfg, Tok: model.ByteTokenizer{}, Weights: model.InitWeights(cfg, 3)}
	if err := m.Save(ckpt); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "kept.parquet")
	var rows [][]string
	for _, p := range testPairs(8, 5) {
		rows = append(rows, []string{p.Prompt, p.Chosen, p.Rejected})
	}
	writePairs(t, in, []string{"prompt", "chosen", "rejected"}, rows)
	out := filepath.Join(dir, "lora.safetensors")
	var log bytes.Buffer
	args := []string{"--pairs", in, "--out", out, "--model", ckpt, "--steps", "2", "--batch", "4", "--targets", "q_proj,v_proj,o_proj", "--rank", "2"}
	if err := Main(context.Background(), args, io.Discard, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	ts, _, err := model.ReadSafetensors(out)
	if err != nil {
		t.Fatal(err)
	}
	b, ok := ts["model.layers.1.self_attn.o_proj.lora_B.weight"]
	if len(ts) != 2*3*2 || !ok || len(b.Dims) != 2 || b.Dims[0] != 16 || b.Dims[1] != 2 {
		t.Errorf("adapters: %d tensors, o_proj B %v", len(ts), b)
	}
	if err := Main(context.Background(), append(args, "--base_seed", "3"), io.Discard, &bytes.Buffer{}); err == nil {
		t.Error("--base-seed with a checkpoint: want an error")
	}
}
