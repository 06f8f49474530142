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
		for _, k := range []string{"gate", "anchor", "score"} {
			if _, ok := c.Options[k]; ok {
				t.Errorf("%s: default --%s recorded", cmd, k)
			}
		}
		if c.Select.Audited() || c.Select.GroupSize != 0 {
			t.Errorf("%s: defaults select a method option: %+v", cmd, c.Select)
		}
		o = newFlags(cmd, io.Discard)
		if err := o.parse([]string{"--gate=leave-out", "--score=group:16", "--keep=noise-aware"}); err != nil {
			t.Fatal(err)
		}
		if err := o.validate(); err != nil {
			t.Fatal(err)
		}
		if c, err = o.pipelineConfig("http://127.0.0.1:1"); err != nil {
			t.Fatal(err)
		}
		if c.Options["gate"] != "leave-out" || c.Options["score"] != "group:16" || c.Select.GroupSize != 16 || c.Select.Gate != "leave-out" {
			t.Errorf("%s: options %v, select %+v", cmd, c.Options, c.Select)
		}
	}
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
