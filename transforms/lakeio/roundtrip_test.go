package lakeio

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/filesystem"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/congrad-beam/congrad/schemas/schematest"
)

const (
	testK    = 8
	testSpec = "countsketch/v1/k=8/seed=42"
)

// records is one sample slice per record type, with its name.
func records(n int) []struct {
	name string
	rows any
} {
	return []struct {
		name string
		rows any
	}{
		{"prompts", schematest.Prompts(n)},
		{"candidates", schematest.Candidates(n)},
		{"pairs", schematest.Pairs(n)},
		{"sketches", schematest.Sketches(n, testK)},
		{"decisions", schematest.Decisions(n)},
		{"dead", schematest.DeadLetters(n)},
	}
}

// roundTrip writes every record type under dir with one pipeline and reads
// them all back with a second, asserting equality.
func roundTrip(t *testing.T, dir string, format Format) {
	t.Helper()
	const n = 300
	recs := records(n)
	wopts := WriteOptions{Format: format, Shards: 3, RowGroupRows: 64, SketchK: testK, SketchSpec: testSpec}

	p, s := beam.NewPipelineWithRoot()
	for _, r := range recs {
		col := beam.CreateList(s, r.rows)
		files := Write(s, dir+"/"+r.name, col, wopts)
		passert.Count(s, files, r.name+" files", 3)
	}
	if err := ptest.Run(p); err != nil {
		t.Fatalf("write %s: %v", dir, err)
	}

	p, s = beam.NewPipelineWithRoot()
	for _, r := range recs {
		// ShardGlob's '?' wildcards also exercise the GCS listing workaround.
		glob := ShardGlob(dir+"/"+r.name, format)
		et := reflect.TypeOf(r.rows).Elem()
		got := Read(s, glob, et, ReadOptions{SketchK: testK, SketchSpec: testSpec})
		passert.EqualsList(s, got, r.rows)
	}
	if err := ptest.Run(p); err != nil {
		t.Fatalf("read back %s: %v", dir, err)
	}
}

func TestRoundTripLocal(t *testing.T) {
	for _, f := range []Format{Parquet, ArrowIPC} {
		t.Run(string(f), func(t *testing.T) { roundTrip(t, filepath.Join(t.TempDir(), "lake"), f) })
	}
}

func TestRoundTripMemfs(t *testing.T) {
	for _, f := range []Format{Parquet, ArrowIPC} {
		t.Run(string(f), func(t *testing.T) { roundTrip(t, "memfs://rt-"+string(f), f) })
	}
}

func TestRoundTripGCS(t *testing.T) {
	for _, f := range []Format{Parquet, ArrowIPC} {
		t.Run(string(f), func(t *testing.T) { roundTrip(t, "gs://"+testBucket+"/rt-"+string(f), f) })
	}
}

// TestReadPromptsRemote reads the mixed JSONL fixture from memfs and fake
// GCS with tiny splits, which exercises ranged reads (gs) and skip-reads
// (memfs) of split starts, and the dead-letter line numbers on both.
func TestReadPromptsRemote(t *testing.T) {
	data, err := os.ReadFile("../../testdata/lake/prompts_mixed.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, path := range []string{"memfs://remote/prompts_mixed.jsonl", "gs://" + testBucket + "/remote/prompts_mixed.jsonl"} {
		t.Run(path[:strings.Index(path, ":")], func(t *testing.T) {
			fs, err := filesystem.New(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			w, err := fs.OpenWrite(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(data)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			fs.Close()
			p, s := beam.NewPipelineWithRoot()
			good, dead := ReadPrompts(s, path, ReadOptions{SplitBytes: 61})
			passert.Count(s, good, "good", 6)
			summaries := beam.ParDo(s, deadSummary, dead)
			passert.Count(s, summaries, "dead", 14)
			passert.Equals(s, beam.ParDo(s, malformedLine, summaries),
				"prompts_mixed.jsonl:6", "prompts_mixed.jsonl:7", "prompts_mixed.jsonl:8", "prompts_mixed.jsonl:20")
			if err := ptest.Run(p); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// malformedLine keeps the "file:line" of malformed-JSON dead letters.
func malformedLine(d string, emit func(string)) {
	if strings.HasSuffix(d, ReasonMalformed) {
		emit(strings.Fields(d)[0])
	}
}

// TestRewriteRemovesStaleShardsRemote repeats the stale-shard rule on object
// stores, where rename is copy+delete and listing is by prefix.
func TestRewriteRemovesStaleShardsRemote(t *testing.T) {
	ctx := context.Background()
	for _, prefix := range []string{"memfs://stale/pairs", "gs://" + testBucket + "/stale/pairs"} {
		t.Run(prefix[:strings.Index(prefix, ":")], func(t *testing.T) {
			writePairs(t, prefix, schematest.Pairs(30), WriteOptions{Shards: 3})
			writePairs(t, prefix, schematest.Pairs(30), WriteOptions{Shards: 2})
			got, err := list(ctx, prefix+"-*")
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				got[i] = trimScheme(got[i])
			}
			want := []string{trimScheme(ShardName(prefix, 0, 2, Parquet)), trimScheme(ShardName(prefix, 1, 2, Parquet))}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("after rerun: %v, want %v", got, want)
			}
		})
	}
}
