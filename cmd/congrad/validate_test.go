package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/congrad-beam/congrad/gpu/model"
)

// runCLI is the binary in-process: exit code, stdout, stderr (with the
// final "congrad: ..." line main prints).
func runCLI(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// oneUsageLine checks the answer to a refused command line: exit code 2,
// exactly one line on stderr, naming the flag, and no stack trace.
func oneUsageLine(t *testing.T, args []string, code int, stderr, flagName string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	switch {
	case code != 2:
		t.Errorf("%q: exit %d, want 2 (stderr %q)", args, code, stderr)
	case len(lines) != 1 || lines[0] == "":
		t.Errorf("%q: want one line on stderr, got %d:\n%s", args, len(lines), stderr)
	case strings.Contains(stderr, "goroutine") || strings.Contains(stderr, "panic"):
		t.Errorf("%q: stack trace on stderr:\n%s", args, stderr)
	case flagName != "" && !strings.Contains(stderr, flagName):
		t.Errorf("%q: %q does not name %s", args, stderr, flagName)
	}
}

// honoured are the flags whose zero is a documented value (greedy, off,
// plain DPO, the model's limit...) and the value (-1 of tau) that is in range.
var honoured = map[string]map[string]bool{
	"0": {"seed": true, "sketch_seed": true, "num_workers": true, "max_num_workers": true, "temperature": true,
		"min_margin": true, "length_penalty": true, "min_score_mass": true, "iteration": true, "max_retries": true,
		"alpha": true, "max_len": true, "tau": true, "progress_every": true, "steps": false, "base_seed": true},
	"-1":   {"tau": true},
	"huge": {"seed": true, "sketch_seed": true, "base_seed": true},
}

// numericFlags lists fs's numeric flags with the values to try: 0,
// negative, NaN, infinite and huge.
func numericFlags(fs *flag.FlagSet) map[string][]string {
	out := map[string][]string{}
	fs.VisitAll(func(f *flag.Flag) {
		g, ok := f.Value.(flag.Getter)
		if !ok {
			return
		}
		switch g.Get().(type) {
		case int, int64, uint, uint64:
			out[f.Name] = []string{"0", "-1", "NaN", "1000000000000"}
		case float64:
			out[f.Name] = []string{"0", "-1", "NaN", "Inf", "-Inf", "1e300"}
		case time.Duration:
			out[f.Name] = []string{"0s", "-1s", "NaN", "1000000h"}
		}
	})
	return out
}

func kindOf(v string) string {
	switch v {
	case "0", "0s":
		return "0"
	case "-1", "-1s":
		return "-1"
	case "1000000000000", "1e300", "1000000h":
		return "huge"
	}
	return v
}

// Every numeric flag of every command at 0, negative, NaN, infinite and
// huge: refused in one usage line before anything runs, or, where the value
// is documented, accepted as it is (never silently replaced).
func TestEveryNumericFlagAtTheEdges(t *testing.T) {
	start := time.Now()
	dir := t.TempDir()
	tried := 0
	for _, cmd := range []string{"run", "generate", "sketch", "select"} {
		for name, values := range numericFlags(newFlags(cmd, io.Discard).fs) {
			for _, v := range values {
				args := []string{cmd, "--" + name + "=" + v, "--out=" + dir}
				tried++
				if honoured[kindOf(v)][name] {
					o := newFlags(cmd, io.Discard)
					if err := o.parse(args[1:]); err != nil {
						t.Errorf("%q: %v", args, err)
						continue
					}
					if err := o.validate(); err != nil {
						t.Errorf("%q refused: %v", args, err)
						continue
					}
					c, err := o.pipelineConfig("http://127.0.0.1:1")
					if err != nil {
						t.Errorf("%q: %v", args, err)
					}
					if got, ok := c.Options[name]; ok && got != o.fs.Lookup(name).Value.String() {
						t.Errorf("%q: report records %s=%s", args, name, got)
					}
					continue
				}
				code, _, stderr := runCLI(args...)
				oneUsageLine(t, args, code, stderr, "--"+name)
			}
		}
	}
	trainFlags := map[string][]string{"steps": {"-1", "NaN", "1000000000000"}, "epochs": {"0", "-1", "NaN"},
		"batch": {"0", "-1", "NaN", "1000000000000"}, "lr": {"0", "-1", "NaN", "Inf", "1e300"},
		"beta": {"0", "-1", "NaN", "Inf", "1e300"}, "alpha": {"-1", "NaN", "Inf", "1e300"},
		"rank": {"0", "-1", "NaN", "1000000000000"}, "max_len": {"-1", "NaN", "1000000000000"},
		"seed": {"-1", "NaN"}, "base_seed": {"-1", "NaN"}}
	for name, values := range trainFlags {
		for _, v := range values {
			args := []string{"train", "--" + name + "=" + v, "--pairs=" + dir + "/x.parquet", "--out=" + dir + "/a.safetensors"}
			tried++
			code, _, stderr := runCLI(args...)
			oneUsageLine(t, args, code, stderr, "-"+name)
		}
	}
	if tried < 200 {
		t.Errorf("only %d cases", tried)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("%d cases took %v: validation must come before any pipeline", tried, d)
	}
}

// Every numeric flag has a range (a new flag without one fails here).
func TestEveryNumericFlagHasABound(t *testing.T) {
	for _, cmd := range []string{"run", "generate", "sketch", "select"} {
		for name := range numericFlags(newFlags(cmd, io.Discard).fs) {
			if _, ok := bounds[name]; !ok {
				t.Errorf("congrad %s --%s has no bound", cmd, name)
			}
		}
	}
}

func TestBadValuesNameTheFlag(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	cases := []struct {
		args []string
		flag string
	}{
		{[]string{"run", "--n=1"}, "--n"},
		{[]string{"run", "--min_margin=-1"}, "--min_margin"},
		{[]string{"run", "--max_tokens=-1"}, "--max_tokens"},
		{[]string{"run", "--temperature=-1"}, "--temperature"},
		{[]string{"run", "--top_p=2"}, "--top_p"},
		{[]string{"run", "--min_score_mass=2"}, "--min_score_mass"},
		{[]string{"run", "--length_penalty=-1"}, "--length_penalty"},
		{[]string{"generate", "--rubric=Rate {{response}}"}, "{{prompt}}"},
		{[]string{"generate", "--rubric=Rate {{prompt}}"}, "{{response}}"},
		{[]string{"generate", "--backend_url=127.0.0.1:8000"}, "--backend_url"},
		{[]string{"generate", "--backend_url=ftp://host"}, "--backend_url"},
		{[]string{"generate", "--backend_api=grpc"}, "--backend_api"},
		{[]string{"generate", "--backend_api=chat", "--score_cue=Score: "}, "--score_cue"},
		{[]string{"generate", "--api_key_env=CONGRAD_TEST_UNSET_VARIABLE"}, "--api_key_env"},
		{[]string{"generate", "--api_key_env=not a name"}, "--api_key_env"},
		{[]string{"generate", "--generator=gpt"}, "--generator"},
		{[]string{"generate", "--request_timeout=0s"}, "--request_timeout"},
		{[]string{"generate", "--request_timeout=5"}, "request_timeout"}, // a duration needs a unit
		{[]string{"sketch", "--beta=0"}, "--beta"},
		{[]string{"sketch", "--model=tiny:seed=x"}, "--model"},
		{[]string{"sketch", "--model=" + dir}, "config.json"},
		{[]string{"select", "--gamma=1"}, "--gamma"},
		{[]string{"select", "--aggregate=median"}, "--aggregate"},
		{[]string{"select", "--n=4"}, "congrad run, generate"}, // a flag of other commands
		{[]string{"select", "--temperature=0.5"}, "not an option of congrad select"},
		{[]string{"select", "--nosuchflag=1"}, "unknown option --nosuchflag"},
		{[]string{"run", "--out=" + file}, "--out"},
		{[]string{"serve", "--addr=localhost"}, "--addr"},
		{[]string{"serve", "--addr=:99999"}, "--addr"},
		{[]string{"serve", "--generator=gpt"}, "--generator"},
		{[]string{"serve", "--model=/no/such/dir"}, "--model"},
		{[]string{"serve", "--port=1"}, "port"},
		{[]string{"train", "--pairs=" + dir + "/*.parquet", "--out=" + dir + "/a.safetensors"}, "no files match"},
		{[]string{"train", "--max-len=8"}, "max-len"},
		{[]string{"frobnicate"}, "frobnicate"},
		{[]string{}, "no command"},
	}
	for _, c := range cases {
		code, _, stderr := runCLI(c.args...)
		oneUsageLine(t, c.args, code, stderr, c.flag)
	}
}

// Zeros the user typed reach the stages as zeros; the report records them.
func TestZeroIsHonoured(t *testing.T) {
	o := newFlags("run", io.Discard)
	if err := o.parse([]string{"--temperature=0", "--min_margin=0", "--min_score_mass=0", "--max_retries=0", "--alpha=0"}); err != nil {
		t.Fatal(err)
	}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	c, err := o.pipelineConfig("http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	core := c.SelfReward.Core.WithDefaults()
	if core.Temperature != 0 || core.JudgeTemperature != 0 || core.MinMargin != 0 || core.MinScoreMass != 0 {
		t.Errorf("zeros replaced: %+v", core)
	}
	if c.SelfReward.Backend.MaxRetries != -1 {
		t.Errorf("--max_retries=0 gave HTTPConfig.MaxRetries=%d (its 0 means 4)", c.SelfReward.Backend.MaxRetries)
	}
	for _, k := range []string{"temperature", "min_margin", "min_score_mass", "max_retries", "alpha"} {
		if c.Options[k] != "0" {
			t.Errorf("report options %s=%q, want 0", k, c.Options[k])
		}
	}
	// Effective values: chat has no score cue; the backend model defaults to --model.
	o = newFlags("generate", io.Discard)
	o.parse([]string{"--backend_api=chat", "--model=tiny:seed=3"})
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	c, err = o.pipelineConfig("http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	if c.Options["score_cue"] != "" || c.SelfReward.Core.ScoreCue != "" || c.Options["backend_model"] != "tiny:seed=3" || !strings.Contains(c.Options["rubric"], "{{response}}") {
		t.Errorf("effective options: score_cue=%q backend_model=%q", c.Options["score_cue"], c.Options["backend_model"])
	}
	for _, k := range []string{"api_key_env", "backend_check", "out", "config"} {
		if _, ok := c.Options[k]; ok {
			t.Errorf("report options record %s", k)
		}
	}
}

// Each command's --help lists its own flags only, all in one style.
func TestHelpListsOnlyTheCommandsFlags(t *testing.T) {
	style := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	not := map[string][]string{
		"select":   {"-n ", "-temperature", "-backend_url", "-beta", "-prompts"},
		"sketch":   {"-n ", "-keep", "-rho", "-backend_url", "-prompts"},
		"generate": {"-keep", "-beta", "-k ", "-pairs", "-sketches"},
	}
	for _, cmd := range []string{"run", "generate", "sketch", "select", "serve", "train"} {
		code, stdout, stderr := runCLI(cmd, "--help")
		if code != 0 || stderr != "" || !strings.Contains(stdout, "Usage: congrad "+cmd) {
			t.Errorf("%s --help: exit %d, stderr %q, stdout %.80q", cmd, code, stderr, stdout)
		}
		for _, n := range not[cmd] {
			if strings.Contains(stdout, "  "+n) {
				t.Errorf("%s --help lists %s", cmd, n)
			}
		}
		for _, line := range strings.Split(stdout, "\n") {
			if f, ok := strings.CutPrefix(line, "  -"); ok {
				name, _, _ := strings.Cut(f, " ")
				if !style.MatchString(name) {
					t.Errorf("%s: flag %q is not snake_case", cmd, name)
				}
			}
		}
	}
}

func TestConfigKeyOfAnotherCommand(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(p, []byte("keep: top\nn: 4\n"), 0o644)
	code, _, stderr := runCLI("select", "--config="+p)
	oneUsageLine(t, []string{"select"}, code, stderr, "--n is not an option of congrad select")
}

// --model is checked from its files without loading the weights.
func TestModelCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := model.NewTiny(1).Save(good); err != nil {
		t.Fatal(err)
	}
	if err := checkModel(good); err != nil {
		t.Fatalf("a saved tiny checkpoint: %v", err)
	}
	for _, ref := range []string{"tiny", "tiny:seed=7"} {
		if err := checkModel(ref); err != nil {
			t.Errorf("%s: %v", ref, err)
		}
	}
	mk := func(name string, edit func(d string)) string {
		d := filepath.Join(dir, name)
		model.NewTiny(1).Save(d)
		edit(d)
		return d
	}
	cases := map[string]string{
		mk("badconfig", func(d string) { os.WriteFile(filepath.Join(d, "config.json"), []byte("{"), 0o644) }):              "config.json",
		mk("noweights", func(d string) { os.Remove(filepath.Join(d, "model.safetensors")) }):                               "no *.safetensors",
		mk("badheader", func(d string) { os.WriteFile(filepath.Join(d, "model.safetensors"), []byte("garbage!"), 0o644) }): "model.safetensors",
		mk("badtok", func(d string) { os.WriteFile(filepath.Join(d, "tokenizer.json"), []byte("{"), 0o644) }):              "tokenizer.json",
		"tiny:7": "tiny:seed=N",
	}
	for ref, want := range cases {
		err := checkModel(ref)
		if err == nil || !strings.Contains(err.Error(), want) || exitCode(err) != 2 || strings.Contains(err.Error(), "\n") {
			t.Errorf("checkModel(%s) = %v, want one line with %q", ref, err, want)
		}
	}
	// A shape that disagrees with config.json.
	d := filepath.Join(dir, "shape")
	m := model.NewTiny(1)
	m.Save(d)
	for n, w := range m.Weights {
		w.Dims = []int{1, len(w.Data)}
		model.WriteSafetensors(filepath.Join(d, "model.safetensors"), map[string]*model.Tensor{n: w}, nil)
		break
	}
	if err := checkModel(d); err == nil {
		t.Error("checkpoint with a wrong tensor shape passed")
	}
}

func TestOutMustBeWritable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes anywhere")
	}
	ro := filepath.Join(t.TempDir(), "ro")
	os.Mkdir(ro, 0o500)
	for _, out := range []string{ro, filepath.Join(ro, "sub")} {
		err := checkOut(out)
		if err == nil || !strings.Contains(err.Error(), "--out="+out) {
			t.Errorf("checkOut(%s) = %v", out, err)
		}
	}
	if err := checkOut("memfs://x/y"); err != nil {
		t.Error(err)
	}
	_ = fmt.Sprint(math.NaN())
}
