package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/congrad-beam/congrad/pipelines"
)

// The method options are refused in one line naming the flag, before any
// pipeline is built.
func TestMethodFlagsValidated(t *testing.T) {
	cases := []struct {
		args []string
		flag string
	}{
		{[]string{"select", "--keep=noise"}, "--keep"},
		{[]string{"select", "--gate=maybe"}, "--gate"},
		{[]string{"select", "--gate=anchor"}, "--gate=anchor needs --anchor"},
		{[]string{"select", "--anchor=x/*.parquet"}, "--anchor"},
		{[]string{"select", "--gate=leave-out", "--anchor=x/*.parquet"}, "--anchor"},
		{[]string{"select", "--gate=leave-out", "--aggregate=ema"}, "--gate"},
		{[]string{"select", "--score=group:1"}, "--score"},
		{[]string{"select", "--score=group:x"}, "--score"},
		{[]string{"select", "--score=group:99999999"}, "--score"},
		{[]string{"select", "--score=triple"}, "--score"},
		{[]string{"run", "--score=group"}, "--score"},
		{[]string{"run", "--gate=anchor", "--anchor=" + t.TempDir() + "/none-*.parquet"}, "--anchor"},
		{[]string{"sketch", "--gate=leave-out"}, "not an option of congrad sketch"},
		{[]string{"sketch", "--gate_boot=100"}, "not an option of congrad sketch"},
		{[]string{"select", "--gate=leave-out", "--gate_boot=5"}, "--gate_boot"},
		{[]string{"select", "--gate=leave-out", "--gate_boot=1000000"}, "--gate_boot"},
		{[]string{"select", "--gate=leave-out", "--gate_boot=x"}, "--gate_boot"},
		{[]string{"select", "--gate=leave-out", "--gate_level=1"}, "--gate_level"},
		{[]string{"select", "--gate=leave-out", "--gate_level=0"}, "--gate_level"},
		{[]string{"run", "--gate=leave-out", "--gate_level=NaN"}, "--gate_level"},
		{[]string{"select", "--gate_boot=500"}, "--gate_boot needs --gate"},
		{[]string{"run", "--gate_level=0.9"}, "--gate_level needs --gate"},
		{[]string{"select", "--keep=noise-aware", "--noise_min_pairs=1"}, "--noise_min_pairs"},
		{[]string{"select", "--noise_min_pairs=30"}, "--noise_min_pairs needs --keep=noise-aware"},
		{[]string{"run", "--gate=anchor"}, "--gate=anchor needs --anchor"},
		{[]string{"select", "--rank_bucket_rows=0"}, "--rank_bucket_rows"},
		{[]string{"run", "--rank_bucket_rows=-5"}, "--rank_bucket_rows"},
		{[]string{"select", "--rank_bucket_rows=2000000000"}, "--rank_bucket_rows"},
	}
	for _, c := range cases {
		code, _, stderr := runCLI(append(c.args, "--out="+t.TempDir())...)
		oneUsageLine(t, c.args, code, stderr, c.flag)
	}
}

// Default method options are not recorded in the report's options (a
// default run's report.json keeps its bytes); used ones are.
func TestMethodOptionsRecordedWhenUsed(t *testing.T) {
	for _, cmd := range []string{"select", "run"} {
		o := newFlags(cmd, io.Discard)
		if err := o.parse(nil); err != nil {
			t.Fatal(err)
		}
		if err := o.validate(); err != nil {
			t.Fatal(err)
		}
		c, err := o.pipelineConfig("http://127.0.0.1:1")
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"gate", "anchor", "score", "rank_bucket_rows"} {
			if _, ok := c.Options[k]; ok {
				t.Errorf("%s: default --%s recorded", cmd, k)
			}
		}
		if c.Select.Audited() || c.Select.GroupSize != 0 {
			t.Errorf("%s: defaults select a method option: %+v", cmd, c.Select)
		}
		if c.Select.RankBucketRows != 1<<18 {
			t.Errorf("%s: rank bucket rows %d passed on, want the default", cmd, c.Select.RankBucketRows)
		}
		o = newFlags(cmd, io.Discard)
		if err := o.parse([]string{"--gate=leave-out", "--score=group:16", "--keep=noise-aware", "--rank_bucket_rows=99"}); err != nil {
			t.Fatal(err)
		}
		if err := o.validate(); err != nil {
			t.Fatal(err)
		}
		if c, err = o.pipelineConfig("http://127.0.0.1:1"); err != nil {
			t.Fatal(err)
		}
		// --rank_bucket_rows changes how the work is spread, not the outputs
		// (TestSelectBlocksMatchPerElementPath): never recorded.
		if _, ok := c.Options["rank_bucket_rows"]; ok || c.Select.RankBucketRows != 99 {
			t.Errorf("%s: --rank_bucket_rows=99: options %v, select %d", cmd, c.Options, c.Select.RankBucketRows)
		}
		if c.Options["gate"] != "leave-out" || c.Options["score"] != "group:16" || c.Select.GroupSize != 16 || c.Select.Gate != "leave-out" {
			t.Errorf("%s: options %v, select %+v", cmd, c.Options, c.Select)
		}
		// The settings of a method option in use are recorded (at their
		// defaults too: the report says which interval gated).
		if c.Options["gate_boot"] != "1000" || c.Options["gate_level"] != "0.95" || c.Options["noise_min_pairs"] != "20" ||
			c.Select.GateBoot != 1000 || c.Select.GateLevel != 0.95 || c.Select.NoiseMinPairs != 20 {
			t.Errorf("%s: settings not passed on: options %v, select %+v", cmd, c.Options, c.Select)
		}
	}
	// Not in use: neither passed on nor recorded.
	o := newFlags("select", io.Discard)
	if err := o.parse(nil); err != nil {
		t.Fatal(err)
	}
	c, err := o.pipelineConfig("")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"gate_boot", "gate_level", "noise_min_pairs"} {
		if _, ok := c.Options[k]; ok {
			t.Errorf("default --%s recorded", k)
		}
	}
	if c.Select.GateBoot != 0 || c.Select.GateLevel != 0 || c.Select.NoiseMinPairs != 0 {
		t.Errorf("settings of unused options passed on: %+v", c.Select)
	}
}

// The settings are flags like the others: in a config file, in -h.
func TestMethodSettingsFlags(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("gate: leave-out\ngate_boot: 250\ngate_level: 0.9\nkeep: noise-aware\nnoise_min_pairs: 40\n"), 0o644)
	for _, cmd := range []string{"select", "run"} {
		o := newFlags(cmd, io.Discard)
		if err := o.parse([]string{"--config=" + cfg}); err != nil {
			t.Fatal(err)
		}
		if err := o.validate(); err != nil {
			t.Fatal(err)
		}
		c, err := o.pipelineConfig("http://127.0.0.1:1")
		if err != nil {
			t.Fatal(err)
		}
		if c.Select.GateBoot != 250 || c.Select.GateLevel != 0.9 || c.Select.NoiseMinPairs != 40 ||
			c.Options["gate_boot"] != "250" || c.Options["gate_level"] != "0.9" || c.Options["noise_min_pairs"] != "40" {
			t.Errorf("%s --config: select %+v, options %v", cmd, c.Select, c.Options)
		}
		var help bytes.Buffer
		h := newFlags(cmd, &help)
		h.parse([]string{"-h"})
		for _, f := range []string{"-gate_boot", "-gate_level", "-noise_min_pairs", "-anchor"} {
			if !strings.Contains(help.String(), f) {
				t.Errorf("congrad %s -h lacks %s", cmd, f)
			}
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("gate: anchor\nanchor: x.parquet\ngate_level: 1.5\n"), 0o644)
	code, _, stderr := runCLI("select", "--config="+bad, "--out="+t.TempDir())
	oneUsageLine(t, []string{"select", "--config"}, code, stderr, "--gate_level")
}

// congrad run with the leave-out gate, group scores and the noise-aware
// rule; congrad select on that lake with the anchor gate, the anchor being
// sketch files of the same model and settings; an anchor sketched with
// another LoRA rank is refused in one line.
func TestMethodOptionsCLI(t *testing.T) {
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	common := []string{"--generator_corpus=../../testdata/prompts/answers.tsv", "--k=64", "--lora_rank=2",
		"--min_margin=0.05", "--n=3", "--j=1", "--shards=2", "--quiet"}
	args := append([]string{"run", "--prompts=../../testdata/prompts/[ed][ne].jsonl", "--out=" + out,
		"--gate=leave-out", "--score=group:4", "--keep=noise-aware"}, common...)
	if err := Main(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	rep := readMethodReport(t, out)
	if len(rep.Gates) != 2 || rep.Options["gate"] != "leave-out" {
		t.Fatalf("run: report gates %v, options %v", rep.Gates, rep.Options)
	}
	for _, l := range rep.Languages {
		if l.ScoreType != "group:4" || l.Noise == nil || l.Target == "" {
			t.Errorf("run: language %+v lacks the audit", l)
		}
	}
	// The anchor: sketches of trusted pairs (here: the run's own pairs)
	// with the same model and sketch settings.
	anchor := t.TempDir()
	pairs := filepath.Join(out, "pairs-*.parquet")
	if err := Main(context.Background(), []string{"sketch", "--out=" + anchor, "--pairs=" + pairs, "--k=64", "--lora_rank=2", "--shards=1", "--quiet"}, io.Discard, io.Discard); err != nil {
		t.Fatalf("sketch anchor: %v", err)
	}
	if err := Main(context.Background(), []string{"select", "--out=" + out, "--quiet", "--shards=2", "--gate=anchor",
		"--anchor=" + filepath.Join(anchor, "sketches-*.parquet")}, &stdout, io.Discard); err != nil {
		t.Fatalf("select --gate=anchor: %v", err)
	}
	rep = readMethodReport(t, out)
	if len(rep.Gates) != 2 || rep.Gates[0].Kind != "anchor" {
		t.Fatalf("select: report gates %+v", rep.Gates)
	}
	other := t.TempDir()
	if err := Main(context.Background(), []string{"sketch", "--out=" + other, "--pairs=" + pairs, "--k=64", "--lora_rank=3", "--shards=1", "--quiet"}, io.Discard, io.Discard); err != nil {
		t.Fatalf("sketch other anchor: %v", err)
	}
	a := []string{"select", "--out=" + out, "--gate=anchor", "--anchor=" + filepath.Join(other, "sketches-*.parquet")}
	code, _, serr := runCLI(a...)
	oneUsageLine(t, a, code, serr, "lora_rank=3")

	// The anchor is an input of select: its manifest records where it came
	// from and its digest.
	ref := anchorInput(t, out)
	if ref.Stage != pipelines.StageSketch || ref.RunID == "" || ref.Digest == "" || ref.Files != 1 {
		t.Fatalf("select manifest: anchor input %+v", ref)
	}
	// Pair files: select has no model; refused in one line that says what to do.
	a = []string{"select", "--out=" + out, "--gate=anchor", "--anchor=" + pairs}
	code, _, serr = runCLI(a...)
	oneUsageLine(t, a, code, serr, "congrad sketch")
	// A JSONL anchor, or a glob matching nothing: refused.
	a = []string{"select", "--out=" + out, "--gate=anchor", "--anchor=../../testdata/prompts/en.jsonl"}
	code, _, serr = runCLI(a...)
	oneUsageLine(t, a, code, serr, "JSONL")
	a = []string{"select", "--out=" + out, "--gate=anchor", "--anchor=" + filepath.Join(anchor, "nothing-*.parquet")}
	code, _, serr = runCLI(a...)
	oneUsageLine(t, a, code, serr, "--anchor")

	// Unmanifested anchor files are read as given; the manifest's digest
	// follows their content, so a changed anchor is not the same input.
	anchorFile := filepath.Join(anchor, "sketches-00000-of-00001.parquet")
	otherFile := filepath.Join(other, "sketches-00000-of-00001.parquet")
	loose := t.TempDir()
	copyFile(t, anchorFile, filepath.Join(loose, "dev.parquet"))
	sel := []string{"select", "--out=" + out, "--quiet", "--shards=2", "--gate=anchor", "--anchor=" + filepath.Join(loose, "*.parquet")}
	if err := Main(context.Background(), sel, io.Discard, io.Discard); err != nil {
		t.Fatalf("select with an unmanifested anchor: %v", err)
	}
	if got := anchorInput(t, out); got.Digest != ref.Digest || got.RunID != "" {
		t.Errorf("unmanifested copy of the anchor: input %+v, want digest %.12s without a run", got, ref.Digest)
	}
	copyFile(t, otherFile, filepath.Join(loose, "dev.parquet"))
	if err := Main(context.Background(), sel, io.Discard, io.Discard); err != nil {
		t.Fatalf("select with a changed unmanifested anchor: %v", err)
	}
	if got := anchorInput(t, out); got.Digest == ref.Digest {
		t.Errorf("changed anchor recorded with the old digest %.12s", got.Digest)
	}

	// A manifested anchor: a shard file its manifest does not list, and a
	// listed file changed after its run, are refused.
	stale := filepath.Join(anchor, "sketches-00001-of-00002.parquet")
	copyFile(t, anchorFile, stale)
	a = []string{"select", "--out=" + out, "--gate=anchor", "--anchor=" + filepath.Join(anchor, "sketches-*.parquet")}
	code, _, serr = runCLI(a...)
	oneUsageLine(t, a, code, serr, "not listed")
	os.Remove(stale)
	copyFile(t, otherFile, anchorFile)
	code, _, serr = runCLI(a...)
	oneUsageLine(t, a, code, serr, "after the run")
}

// congrad run with anchor pair files: they are sketched in the run (the
// report's gates are anchor gates), the bootstrap settings are recorded,
// and the run's manifest records the anchor pairs' source. A run cannot
// take its own outputs as its anchor.
func TestRunAnchorPairsCLI(t *testing.T) {
	common := []string{"--generator_corpus=../../testdata/prompts/answers.tsv", "--k=64", "--lora_rank=2",
		"--min_margin=0.05", "--n=3", "--j=1", "--shards=2", "--quiet"}
	dev := t.TempDir()
	args := []string{"generate", "--prompts=../../testdata/prompts/fr.jsonl", "--out=" + dev, "--seed=5",
		"--generator_corpus=../../testdata/prompts/answers.tsv", "--min_margin=0.05", "--n=3", "--j=1", "--shards=1", "--quiet"}
	if err := Main(context.Background(), args, io.Discard, io.Discard); err != nil {
		t.Fatalf("generate dev pairs: %v", err)
	}
	gm, err := pipelines.ReadManifest(context.Background(), dev, pipelines.StageGenerate)
	if err != nil || gm == nil {
		t.Fatalf("dev manifest: %v", err)
	}
	out := t.TempDir()
	devPairs := filepath.Join(dev, "pairs-*.parquet")
	args = append([]string{"run", "--prompts=../../testdata/prompts/[ed][ne].jsonl", "--out=" + out,
		"--gate=anchor", "--anchor=" + devPairs, "--gate_boot=200", "--gate_level=0.9"}, common...)
	var stderr bytes.Buffer
	if err := Main(context.Background(), args, io.Discard, &stderr); err != nil {
		t.Fatalf("run --anchor=pairs: %v\n%s", err, stderr.String())
	}
	rep := readMethodReport(t, out)
	if len(rep.Gates) != 2 || rep.Gates[0].Kind != "anchor" || rep.Options["anchor"] != devPairs ||
		rep.Options["gate_boot"] != "200" || rep.Options["gate_level"] != "0.9" {
		t.Fatalf("run: gates %+v, options %v", rep.Gates, rep.Options)
	}
	if ref := anchorInput(t, out); ref.Stage != pipelines.StageGenerate || ref.RunID != gm.RunID || ref.Digest == "" {
		t.Errorf("run manifest: anchor input %+v, want the dev pairs of run %s", ref, gm.RunID)
	}
	a := append([]string{"run", "--prompts=../../testdata/prompts/en.jsonl", "--out=" + out, "--gate=anchor",
		"--anchor=" + filepath.Join(out, "pairs-*.parquet")}, common...)
	code, _, serr := runCLI(a...)
	oneUsageLine(t, a, code, serr, "output of this")
	// Anchor sketches of another k: refused before anything runs.
	a = append([]string{"run", "--prompts=../../testdata/prompts/en.jsonl", "--out=" + t.TempDir(), "--gate=anchor",
		"--anchor=" + filepath.Join(out, "sketches-*.parquet")}, common...)
	a = append(a, "--k=32")
	code, _, serr = runCLI(a...)
	oneUsageLine(t, a, code, serr, "--anchor")
}

func anchorInput(t *testing.T, out string) pipelines.InputRef {
	t.Helper()
	m, err := pipelines.ReadManifest(context.Background(), out, pipelines.StageSelect)
	if err != nil || m == nil || m.State != pipelines.StateCommitted {
		t.Fatalf("select manifest of %s: %+v, %v", out, m, err)
	}
	return m.Inputs[pipelines.InputAnchor]
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

type methodReport struct {
	Options   map[string]string `json:"options"`
	Languages []struct {
		Lang, Target string
		ScoreType    string          `json:"score_type"`
		Noise        json.RawMessage `json:"noise_fit"`
	} `json:"languages"`
	Gates []struct {
		Lang  string
		Kind  string `json:"gate"`
		Gated bool
	} `json:"language_gates"`
}

func readMethodReport(t *testing.T, out string) methodReport {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, "report", "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r methodReport
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"language_gates"`) {
		t.Log("report without language gates")
	}
	return r
}
