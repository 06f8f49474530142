package lakeio

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/congrad-beam/congrad/schemas"
)

// deadWithFirst is deadSummary plus, for a duplicate, the base name and
// position of the row that was kept: "b.jsonl:1 duplicate_id <- a.jsonl line 6".
func deadWithFirst(d schemas.DeadLetter) string {
	s := deadSummary(d)
	if _, first, ok := strings.Cut(d.Reason, " first read at "); ok {
		s += " <- " + filepath.Base(first)
	}
	return s
}

func promptText(p schemas.Prompt) string { return p.ID + ": " + p.Prompt }

// writePromptRows writes (id, lang, prompt) rows as one Parquet file (row
// groups of 2) or one Arrow IPC file.
func writePromptRows(t *testing.T, path string, rows [][3]string) {
	t.Helper()
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.BinaryTypes.String}, {Name: "lang", Type: arrow.BinaryTypes.String},
		{Name: "prompt", Type: arrow.BinaryTypes.String},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer b.Release()
	for _, r := range rows {
		for j, v := range r {
			b.Field(j).(*array.StringBuilder).Append(v)
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if strings.HasSuffix(path, ".parquet") {
		err = pqarrow.WriteTable(array.NewTableFromRecords(sc, []arrow.RecordBatch{rec}), f, 2,
			parquet.NewWriterProperties(), pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	} else {
		w, werr := ipc.NewFileWriter(f, ipc.WithSchema(sc))
		if werr != nil {
			t.Fatal(werr)
		}
		if err = w.Write(rec); err == nil {
			err = w.Close()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestReadPromptsBOMInvalidUTF8Duplicates: a BOM opening a JSONL file is
// skipped; bytes that are not UTF-8 (JSONL lines, Parquet and Arrow string
// cells) and \u escapes of lone surrogates are invalid_utf8 dead letters
// with their line or row; of rows sharing (lang, id) the first in path then
// line/row order is kept, the others are duplicate_id dead letters naming
// it, within a file and across files and formats, however the files are
// split. Rows read = kept + dead letters.
func TestReadPromptsBOMInvalidUTF8Duplicates(t *testing.T) {
	dir := t.TempDir()
	jsonl := func(name string, lines ...string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	jsonl("a.jsonl",
		"\xEF\xBB\xBF"+`{"id": "d1", "lang": "en", "prompt": "First copy, after a BOM."}`,
		`{"id": "u1", "lang": "en", "prompt": "A bad byte: `+"\xff"+`."}`,
		`{"id": "d1", "lang": "en", "prompt": "Second copy, same file."}`,
		`{"id": "d1", "lang": "de", "prompt": "Eine Übersetzung ist kein Duplikat."}`,
		`{"id": "s1", "lang": "en", "prompt": "A lone surrogate: \ud800."}`,
		`{"id": "d2", "lang": "en", "prompt": "First of d2."}`,
		"\xEF\xBB\xBF"+`{"id": "m1", "lang": "en", "prompt": "A BOM in the middle is not skipped."}`,
	)
	jsonl("b.jsonl",
		`{"id": "d2", "lang": "EN", "prompt": "Copy of d2 in another file."}`,
		`{"id": "d3", "lang": "en", "prompt": "First of d3."}`,
		`{"id": "ok", "lang": "en", "prompt": "An explicit replacement character \ufffd and `+"\uFFFD"+` is text."}`,
	)
	writePromptRows(t, filepath.Join(dir, "c.parquet"), [][3]string{
		{"d3", "en", "Copy of d3 in Parquet."},
		{"p1", "en", "Not UTF-8 in Parquet: \xc3\x28."},
		{"d1", "en", "Third copy of d1."},
		{"p2", "en", "Fine."},
	})
	writePromptRows(t, filepath.Join(dir, "d.arrow"), [][3]string{
		{"a1", "en\xff", "Not UTF-8 in an Arrow lang cell."},
		{"d2", "en", "Third copy of d2."},
	})
	wantGood := []string{"d1/en", "d1/de", "d2/en", "d3/en", "ok/en", "p2/en"}
	wantDead := []string{
		"a.jsonl:2 invalid_utf8", "a.jsonl:3 duplicate_id <- a.jsonl line 1", "a.jsonl:5 invalid_utf8",
		"a.jsonl:7 malformed_json", "b.jsonl:1 duplicate_id <- a.jsonl line 6",
		"c.parquet:0 duplicate_id <- b.jsonl line 2", "c.parquet:1 invalid_utf8", "c.parquet:2 duplicate_id <- a.jsonl line 1",
		"d.arrow:0 invalid_utf8", "d.arrow:1 duplicate_id <- a.jsonl line 6",
	}
	for _, splitBytes := range []int64{0, 23} {
		t.Run(fmt.Sprintf("split=%d", splitBytes), func(t *testing.T) {
			p, s := beam.NewPipelineWithRoot()
			good, dead := ReadPrompts(s, dir+"/*", ReadOptions{SplitBytes: splitBytes})
			passert.EqualsList(s, beam.ParDo(s, promptSummary, good), wantGood)
			passert.EqualsList(s, beam.ParDo(s, deadWithFirst, dead), wantDead)
			res, err := ptest.RunWithMetrics(p)
			if err != nil {
				t.Fatal(err)
			}
			c := counters(t, res)
			if c["prompts_good"] != 6 || c["prompts_dead"] != 10 || c["prompts_dead_invalid_utf8"] != 4 || c["prompts_dead_duplicate_id"] != 5 {
				t.Errorf("counters %v: want good 6, dead 10 (4 invalid_utf8, 5 duplicate_id)", c)
			}
			if rows := int64(7 + 3 + 4 + 2); c["prompts_good"]+c["prompts_dead"] != rows {
				t.Errorf("good+dead = %d, want %d rows", c["prompts_good"]+c["prompts_dead"], rows)
			}
		})
	}
}

// TestReadPromptsKeepsFirstCopy: the kept copy of a duplicated id is the one
// earliest in path then line order (its text shows which), on every run.
func TestReadPromptsKeepsFirstCopy(t *testing.T) {
	dir := t.TempDir()
	var a, b []string
	for i := 0; i < 50; i++ {
		a = append(a, fmt.Sprintf(`{"id": "x%02d", "lang": "en", "prompt": "a.jsonl line %d"}`, i%10, i+1))
		b = append(b, fmt.Sprintf(`{"id": "x%02d", "lang": "en", "prompt": "b.jsonl line %d"}`, i%10, i+1))
	}
	os.WriteFile(filepath.Join(dir, "b.jsonl"), []byte(strings.Join(b, "\n")), 0o644)
	os.WriteFile(filepath.Join(dir, "a.jsonl"), []byte(strings.Join(a, "\n")), 0o644)
	var want []string
	for i := 0; i < 10; i++ {
		want = append(want, fmt.Sprintf("x%02d: a.jsonl line %d", i, i+1))
	}
	p, s := beam.NewPipelineWithRoot()
	good, dead := ReadPrompts(s, dir+"/*.jsonl", ReadOptions{SplitBytes: 100})
	passert.EqualsList(s, beam.ParDo(s, promptText, good), want)
	passert.Count(s, dead, "dead", 90)
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}
}
