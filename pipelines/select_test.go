package pipelines

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/apache/arrow-go/v18/parquet/file"

	"github.com/congrad-beam/congrad/schemas"
)

type fullReport struct {
	Totals    map[string]map[string]int64 `json:"totals"`
	Consensus []float32                   `json:"consensus"`
	Counts    []struct {
		Stage, Lang, Outcome string
		N                    int64
	} `json:"counts"`
	DeadLetters []struct {
		Stage, Kind string
		N           int64
		Examples    []string
	} `json:"dead_letters"`
}

func readFullReport(t *testing.T, dir string) fullReport {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, OutReportDir, ReportJSON))
	if err != nil {
		t.Fatal(err)
	}
	var r fullReport
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// Orphan, duplicate and wrong-language sketches never reach G_l or g*: the
// consensus of a lake with them equals the consensus of the lake without
// them, and every pair and sketch row is accounted for in report.json, with
// dead letters grouped by kind and counted per language.
func TestSelectRejectsBadSketchesBeforeAggregation(t *testing.T) {
	pairs, sks, _ := synthLake(t, 30)
	big := func(v float32) []float32 {
		out := make([]float32, testK)
		for i := range out {
			out[i] = v * float32(1+i%5)
		}
		return out
	}
	// The clean lake: the valid pairs and sketches only.
	var cleanPairs []schemas.Pair
	var cleanSks []schemas.Sketch
	for _, p := range pairs {
		if p.PairID != "zz-nosketch" && p.PairID != "zz-nan" {
			cleanPairs = append(cleanPairs, p)
		}
	}
	for _, s := range sks {
		if s.PairID != "zz-nan" && s.PairID != "zz-orphan" {
			cleanSks = append(cleanSks, s)
		}
	}
	// The dirty lake: synthLake's bad rows plus a pair with two sketches and
	// a pair whose sketch says another language.
	dirtyPairs := append(append([]schemas.Pair{}, pairs...),
		schemas.Pair{PairID: "zz-dup", Lang: "en", Prompt: "p", Chosen: "c", Rejected: "r"},
		schemas.Pair{PairID: "zz-mm", Lang: "de", Prompt: "p", Chosen: "c", Rejected: "r"})
	dirtySks := append(append([]schemas.Sketch{}, sks...),
		schemas.Sketch{PairID: "zz-dup", Lang: "en", Values: big(40)},
		schemas.Sketch{PairID: "zz-dup", Lang: "en", Values: big(-30)},
		schemas.Sketch{PairID: "zz-mm", Lang: "en", Values: big(60)})

	clean, dirty := t.TempDir(), t.TempDir()
	writeLake(t, clean, cleanPairs, cleanSks)
	writeLake(t, dirty, dirtyPairs, dirtySks)
	for _, variant := range []string{"top", "ema"} {
		runSelect(t, selectConfig(clean, variant))
		runSelect(t, selectConfig(dirty, variant))
		rc, rd := readFullReport(t, clean), readFullReport(t, dirty)
		if len(rd.Consensus) != testK || !reflect.DeepEqual(rc.Consensus, rd.Consensus) {
			t.Fatalf("%s: bad sketches changed g*:\nclean %v\ndirty %v", variant, rc.Consensus, rd.Consensus)
		}
		sel := rd.Totals["select"]
		// Pairs: zz-nosketch, zz-nan, zz-dup and zz-mm are dead.
		if sel["pairs_in"] != int64(len(dirtyPairs)) || sel["kept"]+sel["dropped"]+sel["dead"] != sel["pairs_in"] || sel["dead"] != 4 {
			t.Fatalf("%s: pair accounting %v", variant, sel)
		}
		// Sketches: the orphan, the NaN one, both duplicates and the
		// mismatch are dead rows; the rest are scored.
		if sel["sketches_in"] != int64(len(dirtySks)) || sel["sketches_dead"] != 5 ||
			sel["sketches_scored"]+sel["sketches_unscorable"]+sel["sketches_dead"] != sel["sketches_in"] ||
			sel["sketches_scored"] != sel["kept"]+sel["dropped"] {
			t.Fatalf("%s: sketch accounting %v", variant, sel)
		}
		c := selectConfig(dirty, variant)
		if n := rows(t, c.Glob(OutDeadSelect)); n != sel["dead"]+sel["sketches_dead"] {
			t.Fatalf("%s: %d dead-letter rows, want %d pairs + %d sketches", variant, n, sel["dead"], sel["sketches_dead"])
		}
		// Dropped files carry the verdict: score, rank and reason columns.
		files, _ := filepath.Glob(c.Glob(OutDropped))
		for _, f := range files {
			pf, err := file.OpenParquetFile(f, false)
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"pair_id", "prompt", "score", "rank", "reason"} {
				if pf.MetaData().Schema.ColumnIndexByName(name) < 0 {
					t.Fatalf("%s: dropped file %s has no %s column", variant, f, name)
				}
			}
			pf.Close()
		}
		kinds := map[string]int64{}
		for _, d := range rd.DeadLetters {
			if d.Stage == "filter" {
				kinds[d.Kind] = d.N
				if len(d.Examples) == 0 || len(d.Examples) > 3 {
					t.Fatalf("%s: kind %s has examples %q", variant, d.Kind, d.Examples)
				}
			}
		}
		want := map[string]int64{"orphan_sketch": 1, "duplicate_sketch": 3, "lang_mismatch": 2, "invalid_sketch": 2, "no_sketch": 1}
		if !reflect.DeepEqual(kinds, want) {
			t.Fatalf("%s: dead-letter kinds %v, want %v", variant, kinds, want)
		}
		for _, x := range rd.Counts {
			if x.Stage == "select" && x.Lang == "*" {
				t.Fatalf("%s: select count without a language: %+v", variant, x)
			}
		}
	}
}
