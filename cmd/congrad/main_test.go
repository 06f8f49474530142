package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHelpDocumentsEveryFlagWithDefault(t *testing.T) {
	var out bytes.Buffer
	err := Main(context.Background(), []string{"run", "--help"}, &out, io.Discard)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	help := out.String()
	o := newFlags("run", io.Discard)
	n := 0
	o.fs.VisitAll(func(f *flag.Flag) {
		n++
		if !strings.Contains(help, "-"+f.Name) {
			t.Errorf("--help lacks --%s", f.Name)
		}
		if f.Usage == "" {
			t.Errorf("--%s has no description", f.Name)
		}
		// PrintDefaults omits zero defaults; the others must be shown.
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" && !strings.Contains(help, f.DefValue) {
			t.Errorf("--help does not show --%s's default %q", f.Name, f.DefValue)
		}
	})
	if n < 40 {
		t.Fatalf("only %d flags", n)
	}
}

func TestUnknownCommandAndBadOptions(t *testing.T) {
	cases := [][]string{
		{},
		{"frobnicate"},
		{"run", "--runner=dataflow", "--dry_run"}, // no project/region/staging
		{"select", "--keep=bogus"},                // unknown rule
		{"select", "--rho=1.5", "--keep=top"},     // rho outside (0,1]
		{"run", "--runner=universal"},             // no endpoint
		{"run", "--runner=dataflow", "--project=p", "--region=r", "--staging_location=gs://b/s"}, // no backend for generation
		{"sketch", "--k=0"},
		{"run", "--format=csv"},
		{"run", "extra-arg"},
	}
	for _, args := range cases {
		err := Main(context.Background(), args, io.Discard, io.Discard)
		if err == nil || exitCode(err) != 2 {
			t.Errorf("Main(%q) = %v (exit %d), want a usage error", args, err, exitCode(err))
		}
	}
}

func TestConfigFileYAMLAndJSON(t *testing.T) {
	dir := t.TempDir()
	yaml := "# a comment\nkeep: top\nrho: 0.25\nout: \"from-yaml\"\nk: 512   # sketch size\n"
	js := `{"keep": "global-top", "rho": 0.75, "shards": 2, "quiet": true}`
	yp, jp := filepath.Join(dir, "c.yaml"), filepath.Join(dir, "c.json")
	os.WriteFile(yp, []byte(yaml), 0o644)
	os.WriteFile(jp, []byte(js), 0o644)

	o := newFlags("select", io.Discard)
	if err := o.parse([]string{"--config=" + yp, "--rho=0.5"}); err != nil {
		t.Fatal(err)
	}
	if o.keepRule != "top" || o.rho != 0.5 || o.out != "from-yaml" || o.k != 512 {
		t.Fatalf("yaml: keep=%s rho=%v out=%s k=%d (command line must win over the file)", o.keepRule, o.rho, o.out, o.k)
	}
	o = newFlags("select", io.Discard)
	if err := o.parse([]string{"--config=" + jp}); err != nil {
		t.Fatal(err)
	}
	if o.keepRule != "global-top" || o.rho != 0.75 || o.shards != 2 || !o.quiet {
		t.Fatalf("json: %+v", o)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("nosuchflag: 1\n"), 0o644)
	if err := newFlags("select", io.Discard).parse([]string{"--config=" + bad}); err == nil || !strings.Contains(err.Error(), "nosuchflag") {
		t.Fatalf("unknown config key: %v", err)
	}
	nested := filepath.Join(dir, "nested.yaml")
	os.WriteFile(nested, []byte("keep:\n  rule: top\n"), 0o644)
	if err := newFlags("select", io.Discard).parse([]string{"--config=" + nested}); err == nil {
		t.Fatal("nested YAML accepted")
	}
}

// TestRunCommand runs `congrad run` on two languages of the fixtures with
// the markov generator and the tiny model, then `congrad select` again on
// the lake it wrote, and checks the summary and the files.
func TestRunCommand(t *testing.T) {
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	args := []string{"run", "--prompts=../../testdata/prompts/[ed][ne].jsonl", "--out=" + out,
		"--generator_corpus=../../testdata/prompts/answers.tsv", "--k=64", "--lora_rank=2",
		"--min_margin=0.05", "--n=3", "--j=1", "--shards=2", "--progress_every=0.5"}
	if err := Main(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{"kept pairs:", "report:", "pictures:", "select:", "generate:"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout.String())
		}
	}
	if !strings.Contains(stderr.String(), "generate/prompts_read=20") {
		t.Errorf("no progress line with the 20 prompts read:\n%s", stderr.String())
	}
	for _, glob := range []string{"kept-*.parquet", "dropped-*.parquet", "pairs-*.parquet", "sketches-*.parquet",
		"report/report.json", "report/conflict.svg", "report/scores.svg", "report/kept.svg"} {
		if m, _ := filepath.Glob(filepath.Join(out, glob)); len(m) == 0 {
			t.Errorf("no %s in %s", glob, out)
		}
	}
	// The sketch stage alone, on the pairs run wrote, must rewrite the same
	// sketch files byte for byte (same options, same deterministic batches).
	sketchFiles, _ := filepath.Glob(filepath.Join(out, "sketches-*.parquet"))
	want := map[string][]byte{}
	for _, f := range sketchFiles {
		want[f], _ = os.ReadFile(f)
	}
	if err := Main(context.Background(), []string{"sketch", "--out=" + out, "--k=64", "--lora_rank=2", "--shards=2", "--quiet"}, io.Discard, io.Discard); err != nil {
		t.Fatalf("sketch on the written lake: %v", err)
	}
	for f, b := range want {
		got, _ := os.ReadFile(f)
		if !bytes.Equal(got, b) {
			t.Errorf("congrad sketch rewrote %s differently from congrad run", f)
		}
	}
	before, _ := os.ReadFile(filepath.Join(out, "report", "report.json"))
	stdout.Reset()
	if err := Main(context.Background(), []string{"select", "--out=" + out, "--k=64", "--quiet", "--shards=2", "--keep=top"}, &stdout, io.Discard); err != nil {
		t.Fatalf("select on the written lake: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(out, "report", "report.json"))
	if bytes.Equal(before, after) || !bytes.Contains(after, []byte(`"keep_rule": "top"`)) {
		t.Fatal("select did not rewrite the report with the top rule")
	}
}

// CONGRAD_CPUPROFILE writes a pprof profile; a path that cannot be created
// is reported on stderr and the run goes on.
func TestStartCPUProfile(t *testing.T) {
	var stderr bytes.Buffer
	p := filepath.Join(t.TempDir(), "cpu.out")
	finish := startCPUProfile(p, &stderr)
	x := 0
	for i := range 20_000_000 {
		x += i % 7
	}
	finish()
	if st, err := os.Stat(p); err != nil || st.Size() == 0 || stderr.Len() > 0 {
		t.Fatalf("profile %s: %v (stderr %q, x=%d)", p, err, stderr.String(), x)
	}
	startCPUProfile(filepath.Join(t.TempDir(), "no", "such", "dir", "cpu.out"), &stderr)()
	if !strings.Contains(stderr.String(), "CONGRAD_CPUPROFILE") {
		t.Fatalf("unwritable profile path not reported: %q", stderr.String())
	}
	startCPUProfile("", &stderr)() // unset: nothing happens
}
