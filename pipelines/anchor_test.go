package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/transforms/filter"
	"github.com/congrad-beam/congrad/transforms/lakeio"
)

// The settings of the method options change what the method computes:
// another bootstrap level moves the gate's interval, a higher minimum of
// pairs sends a language to the fallback τ. (So the cases of
// TestMethodOptionsMatchReference that set them test something.)
func TestMethodSettingsExercised(t *testing.T) {
	pairs, sks, anchorSks := methodLake(t)
	byName := map[string]SelectOptions{}
	for _, mc := range methodCases() {
		byName[mc.name] = mc.o
	}
	_, gDef := methodReference(t, pairs, sks, anchorSks, byName["leave-out"])
	_, gSet := methodReference(t, pairs, sks, anchorSks, byName["leave-out-b200-l80"])
	moved := false
	for i := range gDef.Langs {
		if gDef.Langs[i].Cos.Hi != gSet.Langs[i].Cos.Hi || gDef.Langs[i].Cos.Lo != gSet.Langs[i].Cos.Lo {
			moved = true
		}
		if gSet.Langs[i].Cos.Hi-gSet.Langs[i].Cos.Lo >= gDef.Langs[i].Cos.Hi-gDef.Langs[i].Cos.Lo {
			t.Errorf("%s: the 80%% interval %+v is not narrower than the 95%% one %+v", gDef.Langs[i].Lang, gSet.Langs[i].Cos, gDef.Langs[i].Cos)
		}
	}
	if !moved {
		t.Fatal("B=200, level 0.8 left every interval where B=1000, level 0.95 put it")
	}
	dDef, _ := methodReference(t, pairs, sks, anchorSks, byName["noise-aware"])
	dSet, _ := methodReference(t, pairs, sks, anchorSks, byName["noise-aware-min50"])
	if r := dSet["es-0001"].Rule; !strings.Contains(r, "fallback") {
		t.Errorf("es has 45 pairs, minimum 50: rule %q, want the fallback", r)
	}
	if r := dDef["es-0001"].Rule; strings.Contains(r, "fallback") {
		t.Errorf("es has 45 pairs, minimum 20: rule %q, want a fit", r)
	}
	if r := dSet["en-0001"].Rule; strings.Contains(r, "fallback") {
		t.Errorf("en has 60 pairs, minimum 50: rule %q, want a fit", r)
	}
}

// Invalid settings are refused when the options are validated.
func TestMethodSettingsValidated(t *testing.T) {
	base := SelectOptions{Spec: testSpec(), Keep: keep.Options{Rule: keep.Positive}}
	cases := []struct {
		f    func(*SelectOptions)
		want string
	}{
		{func(o *SelectOptions) { o.GateBoot = 500 }, "need a gate"},
		{func(o *SelectOptions) { o.Gate = GateLeaveOut; o.GateBoot = 5 }, "B=5"},
		{func(o *SelectOptions) { o.Gate = GateLeaveOut; o.GateBoot = MaxGateBoot + 1 }, "B="},
		{func(o *SelectOptions) { o.Gate = GateLeaveOut; o.GateLevel = 1 }, "level 1"},
		{func(o *SelectOptions) { o.Gate = GateLeaveOut; o.GateLevel = -0.5 }, "level"},
		{func(o *SelectOptions) { o.NoiseMinPairs = 30 }, "needs keep rule noise-aware"},
		{func(o *SelectOptions) { o.Keep.Rule = filter.NoiseAware; o.NoiseMinPairs = 1 }, "minimum pairs 1"},
		{func(o *SelectOptions) { o.Gate = GateLeaveOut; o.AnchorPairs = true }, "anchor pairs need gate"},
	}
	for i, c := range cases {
		o := base
		c.f(&o)
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("case %d: %v, want an error with %q", i, err, c.want)
		}
	}
	o := base
	o.Gate, o.GateBoot, o.GateLevel = GateLeaveOut, 10, 0.5
	o.Keep.Rule, o.NoiseMinPairs = filter.NoiseAware, 2
	if err := o.Validate(); err != nil {
		t.Errorf("valid settings refused: %v", err)
	}
}

// The anchor computed in the pipeline (congrad run's anchor pairs, here
// their sketches as a PCollection) gives the same decisions, bit for bit,
// as the reference with the anchor's exact mean; an anchor sketch that
// cannot be used, or an anchor pair the gradient stage dead-letters, fails
// the job instead of shrinking the anchor.
func TestAnchorSketchesInPipeline(t *testing.T) {
	pairs, sks, anchorSks := methodLake(t)
	o := SelectOptions{Spec: testSpec(), Seed: 7, Aggregate: "mean", Keep: keep.Options{Rule: keep.Top, Rho: 0.5},
		Gate: GateAnchor, Anchor: "unused-*.parquet", AnchorPairs: true}
	want, g := methodReference(t, pairs, sks, anchorSks, o)
	gated := 0
	for _, lg := range g.Langs {
		if lg.Gated {
			gated++
		}
	}
	if gated != 1 {
		t.Fatalf("fixture: %d languages gated, want 1 (xx)", gated)
	}
	p, s := beam.NewPipelineWithRoot()
	oo := o
	if err := oo.Validate(); err != nil {
		t.Fatal(err)
	}
	oo.anchorSketches = beam.CreateList(s, anchorSks)
	sel, err := Select(s, beam.CreateList(s, pairs), beam.CreateList(s, sks), oo)
	if err != nil {
		t.Fatal(err)
	}
	var wantAny []any
	for _, d := range want {
		wantAny = append(wantAny, d)
	}
	passert.Equals(s, sel.Decisions, wantAny...)
	if err := ptest.Run(p); err != nil {
		t.Fatalf("select with in-pipeline anchor: %v", err)
	}

	// Without the pipeline's anchor sketches, pair files cannot be read as
	// an anchor (select has no model).
	{
		_, s := beam.NewPipelineWithRoot()
		oo := o
		oo.Validate()
		if _, err := Select(s, beam.CreateList(s, pairs), beam.CreateList(s, sks), oo); err == nil || !strings.Contains(err.Error(), "pair files") {
			t.Errorf("anchor pairs without their sketches: %v", err)
		}
	}

	bad := append([]schemas.Sketch(nil), anchorSks...)
	bad[3].Values = append([]float32(nil), bad[3].Values...)
	bad[3].Values[2] = float32(math.Inf(1))
	p, s = beam.NewPipelineWithRoot()
	oo = o
	oo.Validate()
	oo.anchorSketches = beam.CreateList(s, bad)
	if _, err := Select(s, beam.CreateList(s, pairs), beam.CreateList(s, sks), oo); err != nil {
		t.Fatal(err)
	}
	if err := ptest.Run(p); err == nil || !strings.Contains(err.Error(), bad[3].PairID) {
		t.Errorf("non-finite anchor sketch: %v, want a failed job naming %s", err, bad[3].PairID)
	}

	p, s = beam.NewPipelineWithRoot()
	beam.ParDo0(s, anchorDeadFn{}, beam.CreateList(s, []schemas.DeadLetter{{Source: "dev-7", Stage: "gradients", Reason: "too long"}}))
	if err := ptest.Run(p); err == nil || !strings.Contains(err.Error(), "dev-7") {
		t.Errorf("dead anchor pair: %v, want a failed job naming dev-7", err)
	}
}

// InspectAnchor tells pair files from sketch files by their columns and
// refuses what cannot be an anchor, naming the file.
func TestInspectAnchor(t *testing.T) {
	ctx := context.Background()
	pairs, sks, anchorSks := methodLake(t)
	dir := t.TempDir()
	writeLake(t, dir, pairs[:30], sks[:30])
	{
		p, s := beam.NewPipelineWithRoot()
		lakeio.Write(s, dir+"/arrow/"+OutPairs, beam.CreateList(s, pairs[:5]), lakeio.WriteOptions{Shards: 1, Format: lakeio.ArrowIPC})
		lakeio.Write(s, dir+"/anchor/"+OutSketches, beam.CreateList(s, anchorSks), lakeio.WriteOptions{Shards: 1,
			SketchK: testK, SketchSpec: testSpec().String()})
		if err := ptest.Run(p); err != nil {
			t.Fatal(err)
		}
	}
	info, err := InspectAnchor(ctx, dir+"/"+OutPairs+"-*.parquet", testSpec())
	if err != nil || info.Kind != AnchorKindPairs || info.Rows != 30 || len(info.Files) != 2 {
		t.Errorf("pair files: %+v, %v", info, err)
	}
	info, err = InspectAnchor(ctx, dir+"/arrow/"+OutPairs+"-*", testSpec())
	if err != nil || info.Kind != AnchorKindPairs || info.Rows != 5 {
		t.Errorf("Arrow pair file: %+v, %v", info, err)
	}
	info, err = InspectAnchor(ctx, dir+"/anchor/*.parquet", testSpec())
	if err != nil || info.Kind != AnchorKindSketches || info.Rows != int64(len(anchorSks)) || info.K != testK || info.Spec != testSpec().String() {
		t.Errorf("sketch files: %+v, %v", info, err)
	}
	other := testSpec()
	other.K = testK / 2
	other.Seed++

	// A pair file renamed like a sketch file is still a pair file.
	renamed := filepath.Join(dir, "renamed")
	os.MkdirAll(renamed, 0o755)
	pf, _ := filepath.Glob(dir + "/" + OutPairs + "-*.parquet")
	b, _ := os.ReadFile(pf[0])
	os.WriteFile(filepath.Join(renamed, "sketches-00000-of-00001.parquet"), b, 0o644)
	if info, err := InspectAnchor(ctx, renamed+"/*", testSpec()); err != nil || info.Kind != AnchorKindPairs {
		t.Errorf("pair file named like sketches: %+v, %v", info, err)
	}

	mixed := filepath.Join(dir, "mixed")
	os.MkdirAll(mixed, 0o755)
	os.WriteFile(filepath.Join(mixed, "a.parquet"), b, 0o644)
	sf, _ := filepath.Glob(dir + "/anchor/*.parquet")
	sb, _ := os.ReadFile(sf[0])
	os.WriteFile(filepath.Join(mixed, "b.parquet"), sb, 0o644)
	jsonl := filepath.Join(dir, "pairs.jsonl")
	os.WriteFile(jsonl, []byte(`{"prompt":"p","chosen":"c","rejected":"r"}`+"\n"), 0o644)
	empty := filepath.Join(dir, "empty.parquet")
	writeEmptyPairs(t, empty)
	for _, c := range []struct {
		glob string
		spec sketch.Spec
		want string
	}{
		{dir + "/none-*.parquet", testSpec(), "no files match"},
		{dir + "/anchor/*.parquet", other, "other settings"},
		{mixed + "/*.parquet", testSpec(), "mixes"},
		{jsonl, testSpec(), "JSONL"},
		{empty, testSpec(), "empty"},
		{dir + "/" + OutSketches + "-*.parquet", other, "other settings"},
	} {
		_, err := InspectAnchor(ctx, c.glob, c.spec)
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrAnchor) {
			t.Errorf("%s: %v, want %q", c.glob, err, c.want)
		}
	}
	// A file of another record type (decisions) is neither.
	sel := t.TempDir()
	c := selectConfig(sel, "positive")
	c.Pairs, c.Sketches = dir+"/"+OutPairs+"-*.parquet", dir+"/"+OutSketches+"-*.parquet"
	runSelect(t, c)
	if _, err := InspectAnchor(ctx, sel+"/"+OutDecisions+"-*", testSpec()); err == nil || !strings.Contains(err.Error(), "neither a pair file") {
		t.Errorf("decision files: %v", err)
	}
	// Kept pairs are pairs.
	if info, err := InspectAnchor(ctx, sel+"/"+OutKept+"-*", testSpec()); err != nil || info.Kind != AnchorKindPairs {
		t.Errorf("kept files: %+v, %v", info, err)
	}
}

// writeEmptyPairs writes a Parquet pair file with no rows.
func writeEmptyPairs(t *testing.T, path string) {
	t.Helper()
	sc := schemas.PairCodec{}.Schema()
	b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer b.Release()
	rec := b.NewRecordBatch()
	defer rec.Release()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := pqarrow.NewFileWriter(sc, f, nil, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// congrad run with anchor pair files (sketched in the run, with the run's
// model and sketch settings) decides as congrad select does with those
// pairs' sketch files written by congrad sketch: the same gate verdicts,
// intervals and decisions on the same lake.
func TestRunAnchorPairsMatchSelect(t *testing.T) {
	url := startMarkov(t)
	prompts := writePrompts(t)
	// The trusted dev pairs: another generation of the same prompts.
	dev := t.TempDir()
	dc := runConfig(t, url, prompts, dev)
	dc.SelfReward.Core.Seed = 99
	{
		p, s := beam.NewPipelineWithRoot()
		if err := BuildGenerate(s, dc); err != nil {
			t.Fatal(err)
		}
		if err := ptest.Run(p); err != nil {
			t.Fatalf("generate dev pairs: %v", err)
		}
	}
	devPairs := dev + "/" + OutPairs + "-*.parquet"
	if rows(t, devPairs) < 2 {
		t.Fatalf("only %d dev pairs", rows(t, devPairs))
	}

	run := t.TempDir()
	rc := runConfig(t, url, prompts, run)
	rc.Select.Keep = keep.Options{Rule: keep.Positive}
	rc.Select.Gate, rc.Select.Anchor, rc.Select.AnchorPairs = GateAnchor, devPairs, true
	if err := ptest.Run(buildRun(t, rc)); err != nil {
		t.Fatalf("run with anchor pairs: %v", err)
	}

	// The anchor pairs' sketches by congrad sketch, then congrad select on
	// the run's pairs and sketches.
	sk := t.TempDir()
	sc := runConfig(t, url, prompts, sk)
	sc.Pairs = devPairs
	{
		p, s := beam.NewPipelineWithRoot()
		if err := BuildSketch(s, sc); err != nil {
			t.Fatal(err)
		}
		if err := ptest.Run(p); err != nil {
			t.Fatalf("sketch dev pairs: %v", err)
		}
	}
	sel := t.TempDir()
	c := runConfig(t, url, prompts, sel)
	c.Pairs, c.Sketches = run+"/"+OutPairs+"-*.parquet", run+"/"+OutSketches+"-*.parquet"
	c.Select = rc.Select
	c.Select.Anchor, c.Select.AnchorPairs = sk+"/"+OutSketches+"-*.parquet", false
	runSelect(t, c)

	a, b := readDecisions(t, run+"/"+OutDecisions+"-*.parquet"), readDecisions(t, sel+"/"+OutDecisions+"-*.parquet")
	if len(a) < 3 || len(a) != len(b) {
		t.Fatalf("run: %d decisions, select: %d", len(a), len(b))
	}
	byID := map[string]schemas.Decision{}
	for _, d := range b {
		byID[d.PairID] = d
	}
	for _, d := range a {
		w := byID[d.PairID]
		if d.Kept != w.Kept || d.Reason != w.Reason || d.Gate != w.Gate || d.Target != w.Target || d.Rank != w.Rank ||
			math.Abs(d.Score-w.Score) > 1e-5 || !strings.HasPrefix(d.Gate, GateAnchor) {
			t.Errorf("%s: run %+v, select %+v", d.PairID, d, w)
		}
	}
	ga, gb := readGates(t, run), readGates(t, sel)
	if len(ga) == 0 || len(ga) != len(gb) {
		t.Fatalf("language gates: run %+v, select %+v", ga, gb)
	}
	for i := range ga {
		x, y := ga[i], gb[i]
		if x.Lang != y.Lang || x.Gated != y.Gated || x.Kind != GateAnchor || math.Abs(x.Cos-y.Cos) > 1e-5 ||
			math.Abs(x.Lo-y.Lo) > 1e-5 || math.Abs(x.Hi-y.Hi) > 1e-5 {
			t.Errorf("gate %d: run %+v, select %+v", i, x, y)
		}
	}
	// The anchor pairs are not the run's pairs: its counts leave them out.
	r := readReport(t, run)
	if r.Totals["gradients"]["pairs_in"] != r.Totals["generate"]["pairs"] {
		t.Errorf("gradients counted %d pairs, generate made %d", r.Totals["gradients"]["pairs_in"], r.Totals["generate"]["pairs"])
	}
}

type gateRow struct {
	Lang   string
	Kind   string  `json:"gate"`
	Cos    float64 `json:"cos"`
	Lo     float64 `json:"ci_lo"`
	Hi     float64 `json:"ci_hi"`
	Gated  bool    `json:"gated"`
	Target string  `json:"target"`
}

func readGates(t *testing.T, dir string) []gateRow {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, OutReportDir, ReportJSON))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Gates []gateRow `json:"language_gates"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r.Gates
}
