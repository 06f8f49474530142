package lakeio

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/metrics"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/congrad-beam/congrad/schemas"
)

// deadSummary reduces a dead letter to "file:row kind" for comparison.
func deadSummary(d schemas.DeadLetter) string {
	kind, _, _ := strings.Cut(d.Reason, ":")
	return fmt.Sprintf("%s:%d %s", filepath.Base(d.Source), d.Row, kind)
}

func promptSummary(p schemas.Prompt) string { return p.ID + "/" + p.Lang }

// counters returns the lakeio counters of a finished pipeline by name.
func counters(t testing.TB, res beam.PipelineResult) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, c := range res.Metrics().Query(func(r metrics.SingleResult) bool { return r.Namespace() == "lakeio" }).Counters() {
		out[c.Name()] += c.Result()
	}
	return out
}

func TestReadPromptsDeadLettersJSONL(t *testing.T) {
	path, err := filepath.Abs("../../testdata/lake/prompts_mixed.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	wantGood := []string{"g01/en", "g02/de", "g03/zh-hans", "g04/pt-br", "g05/hi", "g06/sw"}
	lines := map[int]string{
		6: ReasonMalformed, 7: ReasonMalformed, 8: ReasonMalformed, 9: ReasonMissingField,
		10: ReasonMissingField, 11: ReasonMissingField, 12: ReasonWrongType, 13: ReasonWrongType,
		14: ReasonWrongType, 15: ReasonEmptyPrompt, 16: ReasonEmptyPrompt, 17: ReasonUnknownLang,
		18: ReasonUnknownLang, 20: ReasonMalformed,
	}
	var wantDead []string
	for l, k := range lines {
		wantDead = append(wantDead, fmt.Sprintf("prompts_mixed.jsonl:%d %s", l, k))
	}
	// Tiny splits: rows are cut across many byte ranges and must still be
	// read exactly once, with their true line numbers.
	for _, splitBytes := range []int64{0, 97} {
		t.Run(fmt.Sprintf("split=%d", splitBytes), func(t *testing.T) {
			p, s := beam.NewPipelineWithRoot()
			good, dead := ReadPrompts(s, path, ReadOptions{SplitBytes: splitBytes})
			passert.EqualsList(s, beam.ParDo(s, promptSummary, good), wantGood)
			passert.EqualsList(s, beam.ParDo(s, deadSummary, dead), wantDead)
			res, err := ptest.RunWithMetrics(p)
			if err != nil {
				t.Fatal(err)
			}
			c := counters(t, res)
			if c["prompts_good"] != 6 || c["prompts_dead"] != 14 || c["prompts_blank_lines"] != 1 {
				t.Errorf("counters good=%d dead=%d blank=%d, want 6, 14, 1", c["prompts_good"], c["prompts_dead"], c["prompts_blank_lines"])
			}
			perKind := map[string]int64{}
			for _, k := range lines {
				perKind[k]++
			}
			for k, n := range perKind {
				if c["prompts_dead_"+k] != n {
					t.Errorf("counter prompts_dead_%s = %d, want %d", k, c["prompts_dead_"+k], n)
				}
			}
			// Accounting: every non-blank line is either good or dead.
			if rows := int64(20); c["prompts_good"]+c["prompts_dead"] != rows {
				t.Errorf("good+dead = %d, want %d rows", c["prompts_good"]+c["prompts_dead"], rows)
			}
		})
	}
}

// columnarRows is the columnar fixture: nil means null.
var columnarRows = []struct{ id, lang, prompt *string }{
	{sp("c0"), sp("en"), sp("Good one.")},
	{nil, sp("en"), sp("No id.")},
	{sp("c2"), nil, sp("No lang.")},
	{sp("c3"), sp("de"), nil},
	{sp("c4"), sp("de"), sp("  ")},
	{sp("c5"), sp("qq"), sp("Unknown code.")},
	{sp("c6"), sp("ja"), sp("良い。")},
	{sp(""), sp("ja"), sp("Empty id.")},
}

var columnarDead = map[int]string{1: ReasonMissingField, 2: ReasonMissingField, 3: ReasonMissingField, 4: ReasonEmptyPrompt, 5: ReasonUnknownLang, 7: ReasonEmptyPrompt}

func sp(s string) *string { return &s }

func columnarPromptRecord(t *testing.T) arrow.RecordBatch {
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "lang", Type: arrow.BinaryTypes.LargeString, Nullable: true}, // as pyarrow may write it
		{Name: "prompt", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "extra", Type: arrow.PrimitiveTypes.Int32},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer b.Release()
	for i, r := range columnarRows {
		for j, v := range []*string{r.id, r.lang, r.prompt} {
			type appender interface {
				Append(string)
				AppendNull()
			}
			ab := b.Field(j).(appender)
			if v == nil {
				ab.AppendNull()
			} else {
				ab.Append(*v)
			}
		}
		b.Field(3).(*array.Int32Builder).Append(int32(i))
	}
	return b.NewRecordBatch()
}

func TestReadPromptsDeadLettersColumnar(t *testing.T) {
	dir := t.TempDir()
	rec := columnarPromptRecord(t)
	// Parquet with 3-row row groups, so rows of later splits need RowBase.
	f, err := os.Create(filepath.Join(dir, "p.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pqarrow.WriteTable(array.NewTableFromRecords(rec.Schema(), []arrow.RecordBatch{rec}), f, 3,
		parquet.NewWriterProperties(), pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema())); err != nil {
		t.Fatal(err)
	}
	// Arrow IPC file with two batches.
	af, err := os.Create(filepath.Join(dir, "p.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := ipc.NewFileWriter(af, ipc.WithSchema(rec.Schema()))
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []arrow.RecordBatch{rec.NewSlice(0, 5), rec.NewSlice(5, rec.NumRows())} {
		if err := w.Write(part); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	af.Close()
	// Arrow IPC stream (no footer): read sequentially as one split.
	sf, err := os.Create(filepath.Join(dir, "p.arrows"))
	if err != nil {
		t.Fatal(err)
	}
	sw := ipc.NewWriter(sf, ipc.WithSchema(rec.Schema()))
	for _, part := range []arrow.RecordBatch{rec.NewSlice(0, 2), rec.NewSlice(2, rec.NumRows())} {
		if err := sw.Write(part); err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.Close(); err != nil {
		t.Fatal(err)
	}
	sf.Close()

	// The three files hold the same rows: the good ones of p.arrow (first
	// in path order) are kept, their copies in the others are duplicates.
	var wantDead []string
	wantGood := []string{"c0/en", "c6/ja"}
	for _, name := range []string{"p.arrow", "p.arrows", "p.parquet"} {
		for row, kind := range columnarDead {
			wantDead = append(wantDead, fmt.Sprintf("%s:%d %s", name, row, kind))
		}
		if name != "p.arrow" {
			wantDead = append(wantDead, name+":0 "+ReasonDuplicateID, name+":6 "+ReasonDuplicateID)
		}
	}
	sort.Strings(wantDead)
	p, s := beam.NewPipelineWithRoot()
	good, dead := ReadPrompts(s, dir+"/p.*", ReadOptions{})
	passert.EqualsList(s, beam.ParDo(s, promptSummary, good), wantGood)
	passert.EqualsList(s, beam.ParDo(s, deadSummary, dead), wantDead)
	res, err := ptest.RunWithMetrics(p)
	if err != nil {
		t.Fatal(err)
	}
	c := counters(t, res)
	if rows := int64(3 * len(columnarRows)); c["prompts_good"]+c["prompts_dead"] != rows || c["prompts_good"] != 2 || c["prompts_dead_duplicate_id"] != 4 {
		t.Errorf("good=%d dead=%d (duplicate_id %d), want 2 good and 4 duplicates of %d rows", c["prompts_good"], c["prompts_dead"], c["prompts_dead_duplicate_id"], rows)
	}
}

// TestReadPromptsFixtures reads the project's multilingual fixtures: all
// rows valid.
func TestReadPromptsFixtures(t *testing.T) {
	files, _ := filepath.Glob("../../testdata/prompts/*.jsonl")
	rows := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rows += strings.Count(strings.TrimSpace(string(b)), "\n") + 1
	}
	if rows == 0 {
		t.Fatal("no fixtures under testdata/prompts")
	}
	abs, _ := filepath.Abs("../../testdata/prompts")
	p, s := beam.NewPipelineWithRoot()
	good, dead := ReadPrompts(s, abs+"/*.jsonl", ReadOptions{})
	passert.Count(s, good, "good", rows)
	passert.Empty(s, dead)
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}
}
