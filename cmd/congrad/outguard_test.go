package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/congrad-beam/congrad/pipelines"
)

// Flags of the small staged job the output-protection tests run: one
// language, the markov generator, a 64-wide sketch of a rank-2 LoRA in one
// bucket (a few seconds per stage).
func stageArgs(stage, out string, extra ...string) []string {
	var a []string
	switch stage {
	case "generate":
		a = []string{"--prompts=../../testdata/prompts/en.jsonl", "--generator_corpus=../../testdata/prompts/answers.tsv",
			"--min_margin=0.05", "--n=3", "--j=1"}
	case "sketch":
		a = []string{"--k=64", "--lora_rank=2", "--batch=16", "--max_len=64"}
	}
	a = append([]string{stage, "--out=" + out, "--shards=2", "--quiet"}, a...)
	return append(a, extra...)
}

func mainOK(t *testing.T, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	if err := Main(context.Background(), args, io.Discard, &stderr); err != nil {
		t.Fatalf("congrad %q: %v\n%s", args, err, stderr.String())
	}
	return stderr.String()
}

// mainRefused runs args and wants an error containing every want.
func mainRefused(t *testing.T, what string, args []string, want ...string) {
	t.Helper()
	err := Main(context.Background(), args, io.Discard, io.Discard)
	if err == nil {
		t.Fatalf("%s: congrad %q succeeded, want a refusal", what, args)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("%s: error %q does not say %q", what, err, w)
		}
	}
}

func readManifest(t *testing.T, out, stage string) *pipelines.Manifest {
	t.Helper()
	m, err := pipelines.ReadManifest(context.Background(), out, stage)
	if err != nil || m == nil {
		t.Fatalf("manifest %s in %s: %v", stage, out, err)
	}
	return m
}

func manifestPaths(m *pipelines.Manifest) []string {
	var p []string
	for _, f := range m.Files {
		p = append(p, f.Path)
	}
	return p
}

// TestStagedManifests: every stage commits a manifest; later stages read
// through it, take the sketch stage's settings from it and refuse what it
// does not vouch for; a format or shard change leaves exactly the new
// files; the staged report carries the earlier stages' totals.
func TestStagedManifests(t *testing.T) {
	out := t.TempDir()
	mainOK(t, stageArgs("generate", out)...)
	gen := readManifest(t, out, pipelines.StageGenerate)
	if gen.State != pipelines.StateCommitted || len(gen.Files) != 6 || gen.Outputs["pairs"].Rows == 0 ||
		gen.Totals["generate"]["prompts_read"] != 10 {
		t.Fatalf("generate manifest: state %s, files %v, outputs %v, totals %v", gen.State, manifestPaths(gen), gen.Outputs, gen.Totals)
	}
	for _, f := range gen.Files {
		st, err := os.Stat(filepath.Join(out, f.Path))
		if err != nil || st.Size() != f.Size || f.Rows == nil {
			t.Fatalf("manifest entry %+v vs file: %v", f, err)
		}
	}
	mainOK(t, stageArgs("sketch", out)...)
	if s := readManifest(t, out, pipelines.StageSketch); s.Settings["k"] != "64" || s.Settings["lora_rank"] != "2" ||
		s.Inputs["pairs"].RunID != gen.RunID {
		t.Fatalf("sketch manifest: settings %v, inputs %v", s.Settings, s.Inputs)
	}

	// Item 4: select takes k from the sketch stage; a different --k is
	// refused in one line naming the flag and both values.
	mainRefused(t, "select --k=128", stageArgs("select", out, "--k=128"), "--k=128", "k=64", pipelines.ManifestName("sketch"))
	mainOK(t, stageArgs("select", out)...)
	var rep struct {
		Totals  map[string]map[string]int64 `json:"totals"`
		Options map[string]string           `json:"options"`
	}
	b, _ := os.ReadFile(filepath.Join(out, "report", "report.json"))
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	// Item 5: the staged report has the totals of generate and sketch.
	if rep.Totals["generate"]["prompts_read"] != 10 || rep.Totals["gradients"]["sketches"] == 0 || rep.Options["k"] != "64" {
		t.Fatalf("staged select report: totals %v, k=%s", rep.Totals, rep.Options["k"])
	}
	sel := readManifest(t, out, pipelines.StageSelect)
	if len(sel.Files) != 12 || sel.Inputs["sketches"].Stage != "sketch" {
		t.Fatalf("select manifest files %v inputs %v", manifestPaths(sel), sel.Inputs)
	}

	// congrad train reads kept pairs only as the select manifest lists them.
	kept := filepath.Join(out, "kept-*.parquet")
	keptFiles, _ := filepath.Glob(kept)
	if len(keptFiles) == 0 {
		t.Fatal("no kept files")
	}
	keptOrig, _ := os.ReadFile(keptFiles[0])
	os.WriteFile(keptFiles[0], append(append([]byte{}, keptOrig...), 0), 0o644)
	mainRefused(t, "train on a changed kept file", []string{"train", "--pairs=" + kept,
		"--out=" + filepath.Join(t.TempDir(), "a.safetensors"), "--steps=1"}, keptFiles[0], "bytes")
	os.WriteFile(keptFiles[0], keptOrig, 0o644)

	// Item 1: one run per --out.
	l, err := pipelines.AcquireLock(context.Background(), out, "congrad run (test holder)", "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	mainRefused(t, "second run on a locked --out", stageArgs("select", out), "congrad run (test holder)", "pid")
	l.Release()

	// Item 2: inputs the manifest does not vouch for.
	pairs0 := filepath.Join(out, "pairs-00000-of-00002.parquet")
	orig, _ := os.ReadFile(pairs0)
	os.WriteFile(pairs0, orig[:len(orig)/2], 0o644)
	mainRefused(t, "truncated pairs", stageArgs("sketch", out), pairs0, "bytes")
	os.WriteFile(pairs0, append([]byte{}, orig...), 0o644)
	extra := filepath.Join(out, "pairs-00002-of-00003.parquet")
	os.WriteFile(extra, orig, 0o644)
	mainRefused(t, "foreign shard", stageArgs("select", out), extra, "not listed")
	os.Remove(extra)
	os.Rename(pairs0, pairs0+".away")
	mainRefused(t, "missing pairs", stageArgs("select", out), pairs0, "missing")
	os.Rename(pairs0+".away", pairs0)

	// A running (killed) stage is never read.
	mp := filepath.Join(out, pipelines.ManifestName("sketch"))
	good, _ := os.ReadFile(mp)
	os.WriteFile(mp, bytes.Replace(good, []byte(`"state": "committed"`), []byte(`"state": "running"`), 1), 0o644)
	mainRefused(t, "running sketch stage", stageArgs("select", out), "has not finished")
	os.WriteFile(mp, good, 0o644)

	// Explicit globs: a user's own files (no manifest) are read as given;
	// files of two runs in one glob are refused.
	own := t.TempDir()
	for _, f := range []string{"pairs-00000-of-00002.parquet", "pairs-00001-of-00002.parquet"} {
		b, _ := os.ReadFile(filepath.Join(out, f))
		os.WriteFile(filepath.Join(own, strings.Replace(f, "pairs", "mine", 1)), b, 0o644)
	}
	note := mainOK(t, stageArgs("select", t.TempDir(), "--pairs="+filepath.Join(own, "mine-*.parquet"),
		"--sketches="+filepath.Join(out, "sketches-*.parquet"))...)
	if !strings.Contains(note, "no congrad manifest") {
		t.Errorf("no note about unmanifested --pairs: %q", note)
	}
	out2 := t.TempDir()
	mainOK(t, stageArgs("generate", out2, "--seed=7")...)
	mainRefused(t, "glob over two runs", stageArgs("sketch", t.TempDir(), "--pairs="+filepath.Join(filepath.Dir(out), "*", "pairs-*.parquet")),
		"2 runs")

	// Regenerating with another seed makes the sketches stale for select.
	mainOK(t, stageArgs("generate", out, "--seed=7")...)
	mainRefused(t, "sketches of other pairs", stageArgs("select", out), "computed from other pairs")

	// Item 3: --format=arrow and another shard count over the Parquet run
	// leave exactly the new files, and sketch reads the Arrow pairs.
	mainOK(t, stageArgs("generate", out, "--format=arrow", "--shards=3")...)
	gen = readManifest(t, out, pipelines.StageGenerate)
	for _, p := range []string{"pairs-*", "candidates-*", "dead-generate-*"} {
		m, _ := filepath.Glob(filepath.Join(out, p))
		if len(m) != 3 {
			t.Errorf("after --format=arrow --shards=3: %s = %v, want 3 .arrow files", p, m)
		}
		for _, f := range m {
			if !strings.HasSuffix(f, "-of-00003.arrow") {
				t.Errorf("stale file %s", f)
			}
		}
	}
	if len(gen.Files) != 9 || !strings.HasSuffix(gen.Files[0].Path, ".arrow") {
		t.Errorf("generate manifest after the format change: %v", manifestPaths(gen))
	}
	mainOK(t, stageArgs("sketch", out)...)
	mainOK(t, stageArgs("select", out)...)
}

// A missing manifest is refused with the stage to run.
func TestNoManifestRefused(t *testing.T) {
	out := t.TempDir()
	mainOK(t, stageArgs("generate", out)...)
	os.Remove(filepath.Join(out, pipelines.ManifestName("generate")))
	err := Main(context.Background(), stageArgs("sketch", out), io.Discard, io.Discard)
	if !errors.Is(err, pipelines.ErrManifest) || !strings.Contains(err.Error(), "congrad generate") {
		t.Fatalf("sketch without a generate manifest: %v", err)
	}
}
