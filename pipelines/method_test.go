package pipelines

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/congrad-beam/congrad/congrad/accum"
	"github.com/congrad-beam/congrad/congrad/gate"
	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/congrad/pcgrad"
	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/congrad/vec"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/transforms/filter"
	"github.com/congrad-beam/congrad/transforms/lakeio"
)

// methodLake: three languages sharing a direction c (each with its own
// part), one conflict language "xx" along −c, a few flipped pairs
// (negated gradients) in every language, and anchor sketches of trusted
// pairs along +c. Plus synthLake's bad rows (a pair without sketch, a NaN
// sketch, an orphan sketch), which the method passes must leave out too.
func methodLake(t testing.TB) (pairs []schemas.Pair, sks, anchor []schemas.Sketch) {
	t.Helper()
	sk, err := sketch.New(testSpec())
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(21, 22))
	const d = 256
	c := make([]float32, d)
	for j := range c {
		c[j] = float32(rng.NormFloat64())
	}
	own := func() []float32 {
		v := make([]float32, d)
		for j := range v {
			v[j] = float32(rng.NormFloat64())
		}
		return v
	}
	mk := func(dir []float32, flip bool) []float32 {
		g := make([]float32, d)
		for j := range g {
			g[j] = 0.35*dir[j] + float32(rng.NormFloat64())
			if flip {
				g[j] = -g[j]
			}
		}
		sk.Reset()
		if err := sk.Add("lora", 0, g); err != nil {
			t.Fatal(err)
		}
		return sk.Sketch()
	}
	for _, l := range []string{"en", "es", "fr", "xx"} {
		dir := make([]float32, d)
		o := own()
		for j := range dir {
			dir[j] = c[j] + 0.5*o[j]
			if l == "xx" {
				dir[j] = -c[j] + 0.5*o[j]
			}
		}
		n := map[string]int{"en": 60, "es": 45, "fr": 12, "xx": 40}[l] // fr: too few for a noise fit
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("%s-%04d", l, i)
			pairs = append(pairs, schemas.Pair{PairID: id, PromptID: fmt.Sprint(i), Lang: l, Prompt: "prompt " + id,
				Chosen: "good " + id, Rejected: "bad " + id, ChosenScore: 4, RejectedScore: 1, Margin: 3,
				ChosenScores: []float64{4}, RejectedScores: []float64{1}, RefChosenLogp: math.NaN(), RefRejectedLogp: math.NaN()})
			sks = append(sks, schemas.Sketch{PairID: id, Lang: l, Values: mk(dir, i%5 == 0), RefChosenLogp: -1, RefRejectedLogp: -2})
		}
	}
	for i := 0; i < 20; i++ {
		anchor = append(anchor, schemas.Sketch{PairID: fmt.Sprintf("dev-%03d", i), Lang: []string{"en", "es"}[i%2], Values: mk(c, false)})
	}
	pairs = append(pairs, schemas.Pair{PairID: "zz-nosketch", Lang: "en", Prompt: "p", Chosen: "c", Rejected: "r"})
	nan := make([]float32, testK)
	nan[1] = float32(math.NaN())
	pairs = append(pairs, schemas.Pair{PairID: "zz-nan", Lang: "es", Prompt: "p", Chosen: "c", Rejected: "r"})
	sks = append(sks, schemas.Sketch{PairID: "zz-nan", Lang: "es", Values: nan})
	orphan := make([]float32, testK)
	orphan[0] = 1
	sks = append(sks, schemas.Sketch{PairID: "zz-orphan", Lang: "en", Values: orphan})
	return pairs, sks, anchor
}

// methodReference is the second implementation: the same method in plain
// Go on the admitted sketches, from congrad/gate, congrad/keep,
// congrad/pcgrad and congrad/accum, without Beam. Sums go in pair-id order.
func methodReference(t testing.TB, pairs []schemas.Pair, sks, anchorSks []schemas.Sketch, o SelectOptions) (map[string]schemas.Decision, gate.Gating) {
	t.Helper()
	hasPair := map[string]bool{}
	for _, p := range pairs {
		hasPair[p.PairID] = true
	}
	var adm []schemas.Sketch
	for _, s := range sks {
		if hasPair[s.PairID] && vec.CheckFinite(s.Values) == nil && vec.Norm(s.Values) > 0 {
			adm = append(adm, s)
		}
	}
	sort.Slice(adm, func(i, j int) bool { return adm[i].PairID < adm[j].PairID })
	byLang := map[string][]schemas.Sketch{}
	ms := map[string]*accum.Mean{}
	for _, s := range adm {
		byLang[s.Lang] = append(byLang[s.Lang], s)
		if ms[s.Lang] == nil {
			ms[s.Lang] = accum.NewMean(testK)
		}
		ms[s.Lang].Add(s.Values)
	}
	dirs := map[string][]float32{}
	var langs []string
	for l, m := range ms {
		dirs[l], _ = m.Result()
		langs = append(langs, l)
	}
	sort.Strings(langs)
	cons, err := pcgrad.Consensus(dirs, o.Seed)
	if err != nil {
		t.Fatal(err)
	}
	targets, names, tags := map[string][]float32{}, map[string]string{}, map[string]string{}
	var g gate.Gating
	gopts := gate.DefaultGateOptions()
	gopts.Seed = o.Seed
	switch o.Gate {
	case GateNone, "":
		for _, l := range langs {
			targets[l], names[l], tags[l] = cons.Consensus, filter.TargetConsensus, filter.GateNone
		}
	case GateLeaveOut, GateAnchor:
		refs := map[string][]float32{}
		var a []float32
		if o.Gate == GateLeaveOut {
			if refs, err = gate.LeaveOutRefs(dirs, gopts); err != nil {
				t.Fatal(err)
			}
		} else {
			am := accum.NewMean(testK)
			for _, s := range anchorSks {
				am.Add(s.Values)
			}
			a, _ = am.Result()
			for _, l := range langs {
				refs[l] = a
			}
		}
		cis := map[string]gate.CI{}
		for _, l := range langs {
			ref := refs[l]
			if ref == nil || vec.Norm(ref) == 0 {
				continue
			}
			B, level := 1000, 0.95
			if o.GateBoot != 0 {
				B = o.GateBoot
			}
			if o.GateLevel != 0 {
				level = o.GateLevel
			}
			pb := gate.NewPoissonBoot(B, o.Seed)
			for _, s := range byLang[l] {
				pb.Add(s.PairID, vec.Dot(s.Values, ref)/vec.Norm(ref))
			}
			if cis[l], err = pb.CI(vec.Norm(dirs[l]), level); err != nil {
				t.Fatal(err)
			}
		}
		if o.Gate == GateLeaveOut {
			g, err = gate.FinishLeaveOut(dirs, cis, gopts)
		} else {
			g, err = gate.FinishAnchor(dirs, a, cis, gopts)
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, lg := range g.Langs {
			l := lg.Lang
			targets[l], names[l] = g.Consensus.Consensus, filter.TargetOpen
			if o.Gate == GateAnchor {
				names[l] = filter.TargetAnchor
			} else if lo, ok := g.LeaveOut[l]; ok && !lg.Gated {
				targets[l], names[l] = lo.Consensus, filter.TargetLeaveOut
			}
			tags[l] = o.Gate + " " + map[bool]string{true: filter.GateGated, false: filter.GateOpen}[lg.Gated]
		}
	}
	scoreType := filter.ScorePair
	var items []keep.Scored
	for _, l := range langs {
		tg, err := vec.NewTarget(targets[l])
		if err != nil {
			t.Fatal(err)
		}
		ss := byLang[l]
		if o.GroupSize > 0 {
			scoreType = fmt.Sprintf("group:%d", o.GroupSize)
			var keys, ids []string
			var vs [][]float32
			for _, s := range ss {
				keys, ids, vs = append(keys, l), append(ids, s.PairID), append(vs, s.Values)
			}
			grp, err := gate.HashGroups(keys, ids, o.GroupSize, o.Seed)
			if err != nil {
				t.Fatal(err)
			}
			sc, err := gate.GroupScores(vs, grp, targets[l])
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range ss {
				items = append(items, keep.Scored{PairID: s.PairID, Lang: l, Score: sc[i]})
			}
			continue
		}
		for _, s := range ss {
			c, err := tg.Cosine(s.Values)
			if err != nil {
				t.Fatal(err)
			}
			items = append(items, keep.Scored{PairID: s.PairID, Lang: l, Score: c})
		}
	}
	var vs []keep.Verdict
	rules := map[string]string{}
	switch o.Keep.Rule {
	case filter.NoiseAware:
		no := gate.DefaultNoiseOptions()
		no.FallbackTau = o.Keep.Tau
		if o.NoiseMinPairs != 0 {
			no.MinPairs = o.NoiseMinPairs
		}
		var fits map[string]gate.NoiseFit
		if vs, fits, err = gate.DecideNoiseAware(items, no); err != nil {
			t.Fatal(err)
		}
		for l, f := range fits {
			rules[l] = fmt.Sprintf("noise-aware tau_l=%.6g", f.Tau)
			if f.Fallback != "" {
				rules[l] = fmt.Sprintf("noise-aware fallback tau=%g", o.Keep.Tau)
			}
		}
	case keep.GlobalTop:
		var open []keep.Scored
		for _, it := range items {
			if gated, _ := g.Gated(it.Lang); !gated {
				open = append(open, it)
			}
		}
		cut, err := keep.GlobalCutoff(open, o.Keep.Rho)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range langs {
			var li []keep.Scored
			for _, it := range items {
				if it.Lang == l {
					li = append(li, it)
				}
			}
			v, err := keep.DecideWithCutoff(li, cut)
			if err != nil {
				t.Fatal(err)
			}
			vs = append(vs, v...)
			rules[l] = fmt.Sprintf("global-top rho=%g", o.Keep.Rho)
		}
	default:
		if vs, err = keep.Decide(items, o.Keep); err != nil {
			t.Fatal(err)
		}
		for _, l := range langs {
			rules[l] = map[keep.Rule]string{keep.Positive: fmt.Sprintf("positive tau=%g", o.Keep.Tau),
				keep.Top: fmt.Sprintf("top rho=%g", o.Keep.Rho)}[o.Keep.Rule]
		}
	}
	if o.GroupSize > 0 {
		vs = gate.GroupReasons(vs)
	}
	vs = gate.Apply(vs, g)
	out := map[string]schemas.Decision{}
	for _, v := range vs {
		out[v.PairID] = schemas.Decision{PairID: v.PairID, Lang: v.Lang, Score: v.Score, Rank: v.Rank, Kept: v.Kept, Reason: v.Reason,
			ScoreType: scoreType, Target: names[v.Lang], Rule: rules[v.Lang], Gate: tags[v.Lang]}
	}
	return out, g
}

// readDecisions reads decision files (with or without the audit columns).
func readDecisions(t testing.TB, glob string) []schemas.Decision {
	t.Helper()
	files, _ := filepath.Glob(glob)
	if len(files) == 0 {
		t.Fatalf("no files match %s", glob)
	}
	var out []schemas.Decision
	for _, f := range files {
		pf, err := file.OpenParquetFile(f, false)
		if err != nil {
			t.Fatal(err)
		}
		fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 1 << 16}, memory.DefaultAllocator)
		if err != nil {
			t.Fatal(err)
		}
		tbl, err := fr.ReadTable(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		tr := array.NewTableReader(tbl, 1<<16)
		for tr.Next() {
			ds, err := schemas.DecisionCodec{}.Decode(tr.RecordBatch())
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, ds...)
		}
		tr.Release()
		tbl.Release()
		pf.Close()
	}
	return out
}

type methodCase struct {
	name string
	o    SelectOptions
}

func methodCases() []methodCase {
	base := func(rule keep.Rule) SelectOptions {
		return SelectOptions{Spec: testSpec(), Seed: 7, Aggregate: "mean", Keep: keep.Options{Rule: rule, Tau: 0, Rho: 0.5}}
	}
	with := func(o SelectOptions, f func(*SelectOptions)) SelectOptions { f(&o); return o }
	return []methodCase{
		{"noise-aware", base(filter.NoiseAware)},
		{"leave-out", with(base(keep.Positive), func(o *SelectOptions) { o.Gate = GateLeaveOut })},
		{"anchor-top", with(base(keep.Top), func(o *SelectOptions) { o.Gate = GateAnchor })},
		{"group8", with(base(keep.Positive), func(o *SelectOptions) { o.GroupSize = 8 })},
		// The group pass flushing after every 3 groups: more partial sums, same scores.
		{"group8-flush3", with(base(keep.Positive), func(o *SelectOptions) { o.GroupSize = 8; o.groupsHeld = 3 })},
		{"leave-out-group8-noise", with(base(filter.NoiseAware), func(o *SelectOptions) { o.Gate = GateLeaveOut; o.GroupSize = 8 })},
		{"anchor-global-top", with(base(keep.GlobalTop), func(o *SelectOptions) { o.Gate = GateAnchor })},
		// The settings of --gate_boot, --gate_level and --noise_min_pairs
		// (TestMethodSettingsExercised: they change the outcome).
		{"leave-out-b200-l80", with(base(keep.Positive), func(o *SelectOptions) { o.Gate = GateLeaveOut; o.GateBoot = 200; o.GateLevel = 0.8 })},
		{"noise-aware-min50", with(base(filter.NoiseAware), func(o *SelectOptions) { o.NoiseMinPairs = 50 })},
	}
}

// Every method option under Prism, on sketch files (congrad select) and on
// sketches in a PCollection (congrad run), against methodReference on the
// same sketches: the in-memory path bit for bit (decisions with their audit
// fields), the file path to 1e-9 (its partial sums are added per split).
// The gate is exercised: the conflict language is gated, the others open.
// The decision files carry the audit columns.
func TestMethodOptionsMatchReference(t *testing.T) {
	pairs, sks, anchorSks := methodLake(t)
	dir := t.TempDir()
	writeLake(t, dir, pairs, sks)
	anchorDir := filepath.Join(dir, "anchor")
	{
		p, s := beam.NewPipelineWithRoot()
		lakeio.Write(s, anchorDir+"/"+OutSketches, beam.CreateList(s, anchorSks), lakeio.WriteOptions{Shards: 1,
			SketchK: testK, SketchSpec: testSpec().String()})
		if err := ptest.Run(p); err != nil {
			t.Fatal(err)
		}
	}
	anchorGlob := anchorDir + "/" + OutSketches + "-*.parquet"
	for _, mc := range methodCases() {
		t.Run(mc.name, func(t *testing.T) {
			o := mc.o
			if o.Gate == GateAnchor {
				o.Anchor = anchorGlob
			}
			want, g := methodReference(t, pairs, sks, anchorSks, o)
			if o.Gate != "" {
				for _, lg := range g.Langs {
					if lg.Gated != (lg.Lang == "xx") {
						t.Fatalf("fixture: reference gate of %s = %v (%s): the gate is not exercised", lg.Lang, lg.Gated, lg.Reason)
					}
				}
			}
			kept := 0
			for _, d := range want {
				if d.Kept {
					kept++
				}
			}
			if kept == 0 || kept == len(want) {
				t.Fatalf("fixture: reference keeps %d of %d", kept, len(want))
			}

			// In memory (congrad run's path): bit for bit.
			p, s := beam.NewPipelineWithRoot()
			oo := o
			if err := oo.Validate(); err != nil {
				t.Fatal(err)
			}
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
				t.Fatalf("in-memory select: %v", err)
			}

			// Files (congrad select): to 1e-9, audit in report.json.
			out := t.TempDir()
			c := Config{Out: out, Pairs: dir + "/" + OutPairs + "-*.parquet", Sketches: dir + "/" + OutSketches + "-*.parquet",
				Shards: 2, Gradients: selectConfig(out, "positive").Gradients, Select: o, Options: map[string]string{}}
			runSelect(t, c)
			got := readDecisions(t, c.Glob(OutDecisions))
			if len(got) != len(want) {
				rep, _ := os.ReadFile(filepath.Join(out, OutReportDir, ReportJSON))
				i := strings.Index(string(rep), "dead_letters")
				t.Fatalf("files: %d decisions, want %d; report:\n%.3000s", len(got), len(want), rep[max(i, 0):])
			}
			for _, d := range got {
				w, ok := want[d.PairID]
				if !ok {
					t.Fatalf("files: decision for %s not in the reference", d.PairID)
				}
				if d.Kept != w.Kept || d.Reason != w.Reason || d.Rank != w.Rank || math.Abs(d.Score-w.Score) > 1e-9 ||
					d.ScoreType != w.ScoreType || d.Target != w.Target || d.Rule != w.Rule || d.Gate != w.Gate {
					t.Fatalf("files: %s = %+v, want %+v", d.PairID, d, w)
				}
			}
			checkMethodReport(t, out, o, want, g)
			if mc.name == "leave-out-group8-noise" {
				// Deterministic: a rerun writes the same bytes.
				first := outputs(t, out)
				for name := range first {
					os.Remove(filepath.Join(out, name))
				}
				runSelect(t, c)
				again := outputs(t, out)
				for name, b := range first {
					if string(again[name]) != string(b) {
						t.Errorf("rerun: %s differs", name)
					}
				}
			}
		})
	}
}

// checkMethodReport: report.json's languages carry the audit (score type,
// target, rule) and, with a gate, the table of language gates.
func checkMethodReport(t *testing.T, out string, o SelectOptions, want map[string]schemas.Decision, g gate.Gating) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, OutReportDir, ReportJSON))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Languages []struct {
			Lang, Target, Rule string
			ScoreType          string `json:"score_type"`
			Noise              *struct {
				Tau      float64
				Fallback string
			} `json:"noise_fit"`
			Gate *struct{ Gated bool }
		}
		Gates []struct {
			Lang  string
			Gated bool
			Hi    float64 `json:"ci_hi"`
		} `json:"language_gates"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	byLang := map[string]schemas.Decision{}
	for _, d := range want {
		byLang[d.Lang] = d
	}
	if len(r.Languages) != len(byLang) {
		t.Fatalf("report: %d languages, want %d", len(r.Languages), len(byLang))
	}
	for _, l := range r.Languages {
		w := byLang[l.Lang]
		if l.ScoreType != w.ScoreType || l.Target != w.Target || l.Rule != w.Rule {
			t.Errorf("report %s: audit (%s, %s, %s), want (%s, %s, %s)", l.Lang, l.ScoreType, l.Target, l.Rule, w.ScoreType, w.Target, w.Rule)
		}
		if (o.Keep.Rule == filter.NoiseAware) != (l.Noise != nil) {
			t.Errorf("report %s: noise_fit %v under rule %s", l.Lang, l.Noise, o.Keep.Rule)
		}
		if l.Noise != nil && (l.Noise.Fallback != "") != strings.Contains(l.Rule, "fallback") {
			t.Errorf("report %s: fallback %q, rule %q", l.Lang, l.Noise.Fallback, l.Rule)
		}
	}
	if o.Gate == "" || o.Gate == GateNone {
		if len(r.Gates) != 0 {
			t.Errorf("report: language gates without a gate: %v", r.Gates)
		}
		return
	}
	if len(r.Gates) != len(g.Langs) {
		t.Fatalf("report: %d language gates, want %d", len(r.Gates), len(g.Langs))
	}
	for i, lg := range g.Langs {
		if r.Gates[i].Lang != lg.Lang || r.Gates[i].Gated != lg.Gated || math.Abs(r.Gates[i].Hi-lg.Cos.Hi) > 1e-9 {
			t.Errorf("report gate %d: %+v, want %s gated=%v hi=%v", i, r.Gates[i], lg.Lang, lg.Gated, lg.Cos.Hi)
		}
	}
}

// With a spill directory (the CLI's Prism in-process runs) the group pass
// writes its partial sums to files and shuffles only where they are; the
// outputs are the same bytes as with the sums in the shuffle, with the
// default flush budget and with a flush every 3 groups.
func TestGroupPassSpillSameBytes(t *testing.T) {
	pairs, sks, _ := methodLake(t)
	for _, held := range []int{0, 3} {
		a, b := t.TempDir(), t.TempDir()
		writeLake(t, a, pairs, sks)
		writeLake(t, b, pairs, sks)
		in := outputs(t, a)
		o := SelectOptions{Spec: testSpec(), Seed: 7, Aggregate: "mean", Keep: keep.Options{Rule: keep.Top, Rho: 0.5},
			GroupSize: 8, groupsHeld: held}
		cfg := func(dir string) Config {
			return Config{Out: dir, Pairs: dir + "/" + OutPairs + "-*.parquet", Sketches: dir + "/" + OutSketches + "-*.parquet",
				Shards: 2, Gradients: selectConfig(dir, "positive").Gradients, Select: o, Options: map[string]string{}}
		}
		ca, cb := cfg(a), cfg(b)
		spill := t.TempDir()
		ca.SpillDir = spill
		runSelect(t, ca)
		runSelect(t, cb)
		parts, _ := filepath.Glob(filepath.Join(spill, "group-*", "parts-*"))
		if len(parts) == 0 {
			t.Fatalf("held %d: no spilled partial sums under %s", held, spill)
		}
		oa, ob := outputs(t, a), outputs(t, b)
		n := 0
		for name, x := range ob {
			if _, input := in[name]; input {
				continue
			}
			n++
			if !bytes.Equal(x, oa[name]) {
				t.Errorf("held %d: %s differs with the group pass spilled", held, name)
			}
		}
		if n < 5 || len(oa) != len(ob) {
			t.Fatalf("held %d: %d output files, %d vs %d in all", held, n, len(oa), len(ob))
		}
	}
}

// A spill directory that is not an absolute local path is refused when the
// config is validated (before any pipeline is built), naming it.
func TestConfigRefusesRelativeSpillDir(t *testing.T) {
	for _, dir := range []string{"spill", "gs://bucket/spill"} {
		c := selectConfig(t.TempDir(), "positive")
		c.Select.GroupSize = 8
		c.SpillDir = dir
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "spill dir") || !strings.Contains(err.Error(), dir) {
			t.Errorf("SpillDir %q: err = %v", dir, err)
		}
	}
}
