package lakeio

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/schemas/schematest"
)

// nodeReport is what nodecheck/check.mjs prints for one file.
type nodeReport struct {
	Path    string            `json:"path"`
	Reader  string            `json:"reader"`
	Rows    int               `json:"rows"`
	Columns [][2]string       `json:"columns"`
	First   map[string]any    `json:"first"`
	Meta    map[string]string `json:"meta"`
	Codec   []string          `json:"codec"`
	Nulls   map[string]int    `json:"nulls"`
}

// needNode finds node and the pinned readers. Missing readers fail the test
// in CI (CI=true) and skip it, loudly, elsewhere.
func needNode(t *testing.T) string {
	t.Helper()
	dir, _ := filepath.Abs("nodecheck")
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, "node_modules", "@duckdb", "node-api"))
	}
	if err != nil {
		msg := "independent reader not installed (" + err.Error() + "); run: npm ci --no-audit --no-fund --prefix transforms/lakeio/nodecheck"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("\n**********\nSKIPPING THE DUCKDB/ARROW-JS CHECK: " + msg + "\n**********")
	}
	return node
}

func runNodeCheck(t *testing.T, node string, files ...string) map[string]nodeReport {
	t.Helper()
	cmd := exec.Command(node, append([]string{"check.mjs"}, files...)...)
	cmd.Dir = "nodecheck"
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node check.mjs: %v", err)
	}
	var reps []nodeReport
	if err := json.Unmarshal(out, &reps); err != nil {
		t.Fatalf("node output: %v\n%s", err, out)
	}
	m := map[string]nodeReport{}
	for _, r := range reps {
		m[r.Path] = r
	}
	return m
}

// readerType is how each independent reader names an Arrow type. DuckDB
// reads Parquet, which has no fixed-size list, so sketch values come back as
// FLOAT[] there (pyarrow restores fixed_size_list from the stored ARROW:schema).
func readerType(reader string, t arrow.DataType) string {
	duck := reader == "duckdb"
	switch t := t.(type) {
	case *arrow.StringType:
		return map[bool]string{true: "VARCHAR", false: "Utf8"}[duck]
	case *arrow.Int64Type:
		return map[bool]string{true: "BIGINT", false: "Int64"}[duck]
	case *arrow.Float64Type:
		return map[bool]string{true: "DOUBLE", false: "Float64"}[duck]
	case *arrow.Float32Type:
		return map[bool]string{true: "FLOAT", false: "Float32"}[duck]
	case *arrow.BooleanType:
		return map[bool]string{true: "BOOLEAN", false: "Bool"}[duck]
	case *arrow.ListType:
		if duck {
			return readerType(reader, t.Elem()) + "[]"
		}
		return "List<" + readerType(reader, t.Elem()) + ">"
	case *arrow.FixedSizeListType:
		if duck {
			return readerType(reader, t.Elem()) + "[]"
		}
		return fmt.Sprintf("FixedSizeList[%d]<%s>", t.Len(), readerType(reader, t.Elem()))
	case *arrow.StructType:
		var parts []string
		for _, f := range t.Fields() {
			if duck {
				parts = append(parts, fmt.Sprintf("%q %s", f.Name, readerType(reader, f.Type)))
			} else {
				parts = append(parts, f.Name+":"+readerType(reader, f.Type))
			}
		}
		if duck {
			return "STRUCT(" + strings.Join(parts, ", ") + ")"
		}
		return "Struct<{" + strings.Join(parts, ", ") + "}>"
	}
	return "unmapped " + t.String()
}

// written describes one file the test wrote, for comparison with a report.
type written struct {
	schema *arrow.Schema
	rows   int
	nulls  map[string]int // expected null count per nullable column
	first  map[string]any // expected values of the first row (JSON form)
}

func nanCount[T any](rows []T, get func(T) float64) int {
	n := 0
	for _, r := range rows {
		if v := get(r); v != v {
			n++
		}
	}
	return n
}

func TestIndependentReaders(t *testing.T) {
	node := needNode(t)
	dir := t.TempDir()
	const n = 37
	pairs := schematest.Pairs(n)
	sketches := schematest.Sketches(n, testK)
	cands := schematest.Candidates(n)
	pairNulls := nanCount(pairs, func(p schemas.Pair) float64 { return p.RefChosenLogp })
	firstValues := make([]any, testK)
	for i, v := range sketches[0].Values {
		firstValues[i] = float64(v)
	}
	want := map[string]written{
		"pairs": {schemas.PairCodec{}.Schema(), n, map[string]int{"ref_chosen_logps": pairNulls, "ref_rejected_logps": pairNulls},
			map[string]any{"pair_id": "pair-00000000", "prompt": pairs[0].Prompt, "chosen": pairs[0].Chosen, "rejected": pairs[0].Rejected,
				"chosen_scores": []any{4.0, 5.0}, "ref_rejected_logps": -12.5}},
		"conv": {schemas.PairCodec{Conversational: true}.Schema(), n, map[string]int{"ref_chosen_logps": pairNulls, "ref_rejected_logps": pairNulls},
			map[string]any{"pair_id": "pair-00000000",
				"prompt": []any{map[string]any{"role": "user", "content": pairs[0].Prompt}},
				"chosen": []any{map[string]any{"role": "assistant", "content": pairs[0].Chosen}}}},
		"sketches": {schemas.SketchCodec{K: testK, Spec: testSpec}.Schema(), n, map[string]int{"ref_rejected_logps": n},
			map[string]any{"pair_id": "pair-00000000", "values": firstValues, "ref_chosen_logps": -30.25}},
		"decisions": {schemas.DecisionCodec{}.Schema(), n, nil, map[string]any{"pair_id": "pair-00000000", "kept": true, "score": -1.0, "reason": "score>tau"}},
		"dead":      {schemas.DeadLetterCodec{}.Schema(), n, nil, map[string]any{"source": "file-0.jsonl", "row": -1.0, "payload": `{"id": 0`}},
		"prompts":   {schemas.PromptCodec{}.Schema(), n, nil, map[string]any{"id": "p000003", "lang": "ar"}},
		"candidates": {schemas.CandidateCodec{}.Schema(), n,
			map[string]int{"mean_score": nanCount(cands, func(c schemas.Candidate) float64 { return c.MeanScore })}, nil},
	}

	p, s := beam.NewPipelineWithRoot()
	var files []string
	for _, f := range []Format{Parquet, ArrowIPC} {
		o := WriteOptions{Format: f, Shards: 1, RowGroupRows: 10, SketchK: testK, SketchSpec: testSpec}
		Write(s, dir+"/pairs", beam.CreateList(s, pairs), o)
		oc := o
		oc.Conversational = true
		Write(s, dir+"/conv", beam.CreateList(s, pairs), oc)
		Write(s, dir+"/sketches", beam.CreateList(s, sketches), o)
		Write(s, dir+"/decisions", beam.CreateList(s, schematest.Decisions(n)), o)
		Write(s, dir+"/dead", beam.CreateList(s, schematest.DeadLetters(n)), o)
		Write(s, dir+"/prompts", beam.CreateList(s, schematest.Prompts(n)), o)
		Write(s, dir+"/candidates", beam.CreateList(s, cands), o)
		for name := range want {
			files = append(files, ShardName(dir+"/"+name, 0, 1, f))
		}
	}
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}
	reps := runNodeCheck(t, node, files...)
	for _, path := range files {
		name, _, _ := strings.Cut(filepath.Base(path), "-00000")
		w := want[name]
		r, ok := reps[path]
		if !ok {
			t.Errorf("%s: no report from the reader", path)
			continue
		}
		if r.Rows != w.rows {
			t.Errorf("%s (%s): %d rows, want %d", path, r.Reader, r.Rows, w.rows)
		}
		var gotCols, wantCols []string
		for _, c := range r.Columns {
			gotCols = append(gotCols, c[0]+" "+c[1])
		}
		for _, f := range w.schema.Fields() {
			wantCols = append(wantCols, f.Name+" "+readerType(r.Reader, f.Type))
		}
		if strings.Join(gotCols, ", ") != strings.Join(wantCols, ", ") {
			t.Errorf("%s (%s) columns:\n got %v\nwant %v", path, r.Reader, gotCols, wantCols)
		}
		for _, f := range w.schema.Fields() {
			if r.Nulls[f.Name] != w.nulls[f.Name] {
				t.Errorf("%s (%s): %d nulls in %s, want %d", path, r.Reader, r.Nulls[f.Name], f.Name, w.nulls[f.Name])
			}
		}
		for col, v := range w.first {
			got := r.First[col]
			if s, ok := got.(string); ok && r.Reader == "duckdb" { // DuckDB's JSON gives BIGINT as a string
				if x, err := strconv.ParseFloat(s, 64); err == nil {
					if _, isNum := v.(float64); isNum {
						got = x
					}
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(v) {
				t.Errorf("%s (%s) first row %s = %v, want %v", path, r.Reader, col, got, v)
			}
		}
		for _, k := range []string{schemas.MetaSchemaVersion, schemas.MetaRecordType} {
			if r.Meta[k] == "" || r.Meta[k] != metaOf(w.schema, k) {
				t.Errorf("%s (%s): metadata %s = %q, want %q", path, r.Reader, k, r.Meta[k], metaOf(w.schema, k))
			}
		}
		if name == "sketches" && r.Meta[schemas.MetaSketchSpec] != testSpec {
			t.Errorf("%s (%s): sketch spec %q", path, r.Reader, r.Meta[schemas.MetaSketchSpec])
		}
		if r.Reader == "duckdb" {
			if r.Meta["ARROW:schema"] == "" {
				t.Errorf("%s: no stored Arrow schema (pyarrow could not restore types)", path)
			}
			if strings.Join(r.Codec, ",") != "ZSTD" {
				t.Errorf("%s: compression %v, want ZSTD", path, r.Codec)
			}
		}
	}
}

func metaOf(s *arrow.Schema, k string) string {
	v, _ := s.Metadata().GetValue(k)
	return v
}
