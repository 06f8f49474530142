package pipelines

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/typex"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/transforms/filter"
	"github.com/congrad-beam/congrad/transforms/lakeio"
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

// The select pipeline on files (BuildSelect) groups no per-pair element
// type: validation, ranking and the join move blocks (issue 12, goal 1).
// The per-element path is checked to hold such groupings, so the test can
// fail.
func TestSelectFilesGroupsNoPerPairElements(t *testing.T) {
	perPair := map[reflect.Type]bool{}
	for _, x := range []any{filter.Meta{}, keep.Scored{}, schemas.Decision{}, schemas.Pair{}, filter.Refs{},
		schemas.Sketch{}, schemas.Dropped{}} {
		perPair[reflect.TypeOf(x)] = true
	}
	grouped := func(p *beam.Pipeline) []string {
		edges, _, err := p.Build()
		if err != nil {
			t.Fatal(err)
		}
		var bad []string
		for _, e := range edges {
			for i, in := range e.Input {
				ft := in.From.Type()
				elem := ft.Type()
				if typex.IsKV(ft) {
					elem = ft.Components()[1].Type()
				}
				side := e.Op == graph.ParDo && i > 0
				if (e.Op == graph.CoGBK || side) && perPair[elem] {
					bad = append(bad, fmt.Sprintf("%v %s input %d: %v", e.Op, e.Name(), i, elem))
				}
			}
		}
		return bad
	}
	dir := t.TempDir()
	for _, variant := range []string{"positive", "global-top"} {
		p, s := beam.NewPipelineWithRoot()
		if err := BuildSelect(s, selectConfig(dir, variant)); err != nil {
			t.Fatal(err)
		}
		if bad := grouped(p); len(bad) > 0 {
			t.Errorf("%s: per-pair elements grouped or used as side inputs:\n%s", variant, strings.Join(bad, "\n"))
		}
	}
	// The in-memory path does group per pair (the check sees it).
	p, s := beam.NewPipelineWithRoot()
	c := selectConfig(dir, "positive")
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := Select(s, beam.CreateList(s, []schemas.Pair{{PairID: "a", Lang: "en"}}),
		beam.CreateList(s, []schemas.Sketch{{PairID: "a", Lang: "en"}}), c.Select); err != nil {
		t.Fatal(err)
	}
	if len(grouped(p)) == 0 {
		t.Fatal("the check finds no per-pair grouping in the per-element path")
	}
}

// The passes that read whole splits (aggregation and scoring decode every
// sketch value; SplitFiles reads every pair) run in stages without side
// inputs: on Prism a stage with side inputs keeps the scheduler spinning
// while its bundle runs (filter/bind.go, docs/perf/select.md), so their side
// data is bound into the elements.
func TestSelectHeavyPassesHaveNoSideInputs(t *testing.T) {
	dir := t.TempDir()
	heavy := func(mod func(*Config)) map[string]int {
		p, s := beam.NewPipelineWithRoot()
		c := selectConfig(dir, "positive")
		mod(&c)
		if err := BuildSelect(s, c); err != nil {
			t.Fatal(err)
		}
		edges, _, err := p.Build()
		if err != nil {
			t.Fatal(err)
		}
		found := map[string]int{}
		for _, e := range edges {
			if e.Op != graph.ParDo || e.DoFn == nil {
				continue
			}
			name := e.DoFn.Name()
			for _, h := range []string{"aggSplitFn", "scoreBlockSplitFn", "bootSplitFn", "scorePlanSplitFn", "groupSplitFn", "splitBoundFn"} {
				if strings.HasSuffix(name, "."+h) {
					found[h]++
					if len(e.Input) != 1 {
						t.Errorf("%s reads a whole split with %d side inputs", name, len(e.Input)-1)
					}
				}
			}
		}
		return found
	}
	if f := heavy(func(*Config) {}); f["aggSplitFn"] != 1 || f["scoreBlockSplitFn"] != 1 || f["splitBoundFn"] != 1 || len(f) != 3 {
		t.Fatalf("default: heavy passes %v, want aggregation, scoring and the pair read", f)
	}
	if f := heavy(func(c *Config) { c.Select.Gate = GateLeaveOut }); f["bootSplitFn"] != 1 || f["scorePlanSplitFn"] != 1 {
		t.Fatalf("leave-out gate: heavy passes %v, want the gate bootstrap and plan scoring", f)
	}
	if f := heavy(func(c *Config) { c.Select.GroupSize = 8 }); f["groupSplitFn"] != 1 {
		t.Fatalf("group scores: heavy passes %v, want grouping", f)
	}
}

// The block path (pairs and sketches read from files) writes the same bytes
// as the per-element path on the same files, for a lake with every kind of
// bad row: orphan, duplicate, NaN and wrong-language sketches, pairs
// without sketch and two pairs sharing an id; under each keep rule
// (positive, top, global-top, noise-aware) and the method path (a gate,
// group scores). The block path ranks each language in buckets of 3 rows,
// the per-element path in one bucket per language.
func TestSelectBlocksMatchPerElementPath(t *testing.T) {
	pairs, sks, _ := synthLake(t, 20)
	big := func(v float32) []float32 {
		out := make([]float32, testK)
		for i := range out {
			out[i] = v * float32(1+i%3)
		}
		return out
	}
	pairs = append(pairs,
		schemas.Pair{PairID: "zz-dup", Lang: "en", Prompt: "p", Chosen: "c", Rejected: "r"},
		schemas.Pair{PairID: "zz-mm", Lang: "de", Prompt: "p", Chosen: "c", Rejected: "r"},
		schemas.Pair{PairID: "zz-twin", Lang: "en", Prompt: "p1", Chosen: "c", Rejected: "r"},
		schemas.Pair{PairID: "zz-twin", Lang: "en", Prompt: "p2", Chosen: "c", Rejected: "r"})
	sks = append(sks,
		schemas.Sketch{PairID: "zz-dup", Lang: "en", Values: big(40)},
		schemas.Sketch{PairID: "zz-dup", Lang: "en", Values: big(-30)},
		schemas.Sketch{PairID: "zz-mm", Lang: "en", Values: big(60)},
		schemas.Sketch{PairID: "zz-twin", Lang: "en", Values: big(5)})
	for _, variant := range []string{"positive", "top", "global-top", "noise", "leave-out", "group"} {
		a, b := t.TempDir(), t.TempDir()
		writeLake(t, a, pairs, sks)
		writeLake(t, b, pairs, sks)
		in := outputs(t, a)
		ca, cb := selectConfig(a, variant), selectConfig(b, variant)
		switch variant {
		case "noise":
			ca, cb = selectConfig(a, "positive"), selectConfig(b, "positive")
			ca.Select.Keep.Rule, cb.Select.Keep.Rule = filter.NoiseAware, filter.NoiseAware
		case "leave-out": // the method path (RankPlan): a gate, global-top
			ca, cb = selectConfig(a, "global-top"), selectConfig(b, "global-top")
			ca.Select.Gate, cb.Select.Gate = GateLeaveOut, GateLeaveOut
		case "group":
			ca, cb = selectConfig(a, "top"), selectConfig(b, "top")
			ca.Select.GroupSize, cb.Select.GroupSize = 4, 4
		}
		ca.Select.RankBucketRows = 3 // each language ranked in several buckets
		runSelect(t, ca)
		runSelectElements(t, cb)
		oa, ob := outputs(t, a), outputs(t, b)
		if len(oa) != len(ob) {
			t.Fatalf("%s: %d files vs %d", variant, len(oa), len(ob))
		}
		n := 0
		for name, x := range oa {
			if _, input := in[name]; input {
				continue
			}
			n++
			if !bytes.Equal(x, ob[name]) {
				t.Errorf("%s: %s differs between the block and the per-element path", variant, name)
			}
		}
		if n < 5 {
			t.Fatalf("%s: only %d output files", variant, n)
		}
		sel := readFullReport(t, a).Totals["select"]
		if sel["kept"]+sel["dropped"]+sel["dead"] != int64(len(pairs)) || sel["sketches_in"] != int64(len(sks)) {
			t.Fatalf("%s: accounting %v", variant, sel)
		}
	}
}

// runSelectElements is BuildSelect with the pairs read as
// PCollection<schemas.Pair> (Select's per-element path on sketch files).
func runSelectElements(t *testing.T, c Config) {
	t.Helper()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Pairs, c.Sketches = c.Glob(OutPairs), c.Glob(OutSketches)
	p, s := beam.NewPipelineWithRoot()
	sks, err := SketchFiles(s, c.Sketches, c.Select)
	if err != nil {
		t.Fatal(err)
	}
	if err := selectStage(s, &c, lakeio.ReadPairs(s, c.Pairs, lakeio.ReadOptions{}), sks, beam.PCollection{}, NewCounter(s)); err != nil {
		t.Fatal(err)
	}
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}
}

// No stage of the select pipeline on files takes the per-pair verdict
// state (decisions, failures, reference log-probs, pair or sketch keys) as
// a side input: a side input is whole on every worker, so that state would
// grow with N in each of them. SplitFiles joins it through shuffles by id
// shard and by split instead (issue 12, goal 1).
func TestSelectFilesPerPairStateIsNotASideInput(t *testing.T) {
	perPair := map[reflect.Type]bool{}
	for _, x := range []any{filter.DecisionBlock{}, filter.RefsBlock{}, filter.Failure{}, filter.PairKeyBlock{},
		filter.MetaBlock{}, filter.ScoreBlock{}, filter.ShardVerdicts{}, schemas.Decision{}} {
		perPair[reflect.TypeOf(x)] = true
	}
	dir := t.TempDir()
	for _, variant := range []string{"positive", "global-top", "noise"} {
		p, s := beam.NewPipelineWithRoot()
		c := selectConfig(dir, variant)
		if variant == "noise" {
			c = selectConfig(dir, "positive")
			c.Select.Keep.Rule = filter.NoiseAware
		}
		if err := BuildSelect(s, c); err != nil {
			t.Fatal(err)
		}
		edges, _, err := p.Build()
		if err != nil {
			t.Fatal(err)
		}
		sides := 0
		for _, e := range edges {
			if e.Op != graph.ParDo {
				continue
			}
			for _, in := range e.Input[1:] {
				sides++
				ft := in.From.Type()
				elem := ft.Type()
				if typex.IsKV(ft) {
					elem = ft.Components()[1].Type()
				}
				if perPair[elem] {
					t.Errorf("%s: %s takes %v as a side input", variant, e.Name(), elem)
				}
			}
		}
		if sides == 0 {
			t.Fatalf("%s: no side inputs at all; the check sees nothing", variant)
		}
	}
}

// Every side input in the pipelines is read through sideinput.Settled (or
// read by a stage whose main input is an Impulse): on Prism a stage fed by a
// GroupByKey could otherwise start before a side input produced downstream
// of another GroupByKey is there, and read it as empty (internal/sideinput).
// Checked on select (files and per-element paths, every keep rule, the
// gates, group scores) and on the whole run pipeline.
func TestSideInputsAreSettled(t *testing.T) {
	dir := t.TempDir()
	check := func(what string, p *beam.Pipeline) {
		t.Helper()
		edges, _, err := p.Build()
		if err != nil {
			t.Fatal(err)
		}
		producer := map[*graph.Node]*graph.MultiEdge{}
		for _, e := range edges {
			for _, o := range e.Output {
				producer[o.To] = e
			}
		}
		sides := 0
		for _, e := range edges {
			if e.Op != graph.ParDo || len(e.Input) < 2 {
				continue
			}
			if m := producer[e.Input[0].From]; m != nil && m.Op == graph.Impulse {
				continue
			}
			for i, in := range e.Input[1:] {
				sides++
				src := producer[in.From]
				if src == nil || src.Op != graph.ParDo || src.DoFn == nil ||
					!strings.HasPrefix(src.DoFn.Name(), "github.com/congrad-beam/congrad/internal/sideinput.") {
					t.Errorf("%s: %s reads side input %d unsettled (from %v)", what, e.DoFn.Name(), i+1, src)
				}
			}
		}
		if sides == 0 {
			t.Fatalf("%s: no side inputs found: the check reads nothing", what)
		}
	}
	for _, variant := range []string{"positive", "top", "global-top", "noise", "leave-out", "group"} {
		c := selectConfig(dir, variant)
		switch variant {
		case "noise":
			c = selectConfig(dir, "positive")
			c.Select.Keep.Rule = filter.NoiseAware
		case "leave-out":
			c = selectConfig(dir, "global-top")
			c.Select.Gate = GateLeaveOut
		case "group":
			c = selectConfig(dir, "top")
			c.Select.GroupSize = 4
		}
		p, s := beam.NewPipelineWithRoot()
		if err := BuildSelect(s, c); err != nil {
			t.Fatal(err)
		}
		check("select "+variant, p)
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		p, s = beam.NewPipelineWithRoot()
		if _, err := Select(s, beam.CreateList(s, []schemas.Pair{{PairID: "a", Lang: "en"}}),
			beam.CreateList(s, []schemas.Sketch{{PairID: "a", Lang: "en"}}), c.Select); err != nil {
			t.Fatal(err)
		}
		check("per-element select "+variant, p)
	}
	check("run", buildRun(t, runConfig(t, "http://127.0.0.1:1", writePrompts(t), t.TempDir())))
}
