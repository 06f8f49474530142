package experiment

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func wellFormedXML(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(bytes.NewReader(data))
	for {
		if _, err := d.Token(); err == io.EOF {
			return
		} else if err != nil {
			t.Fatalf("%s: not well-formed XML: %v", path, err)
		}
	}
}

func section(s, begin, end string) string {
	i := strings.Index(s, begin)
	if i < 0 {
		return ""
	}
	j := strings.Index(s[i:], end)
	if j < 0 {
		return ""
	}
	return s[i : i+j+len(end)]
}

// TestQuickSmoke runs `experiment --quick` (task v2, every arm, two
// self-rewarding rounds) end to end and checks the report and the
// invariants of the design: round 0 is shared by the arms, the round-0
// judge is noisier in low-resource languages, all pairs keeps everything,
// the oracle keeps only correct labels, the fixed-ratio baselines keep
// ConGrad default's share of every round, and --replot of the results
// reproduces the report.
func TestQuickSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("smoke test runs the quick experiment (about a minute)")
	}
	dir := t.TempDir()
	keep := "# Experiments\n\nhand-written design notes\n\n" + BeginMarker + "\nold v1\n" + EndMarker + "\n\nbetween\n\n" +
		BeginMarkerV2 + "\nold v2\n" + EndMarkerV2 + "\n\nhand-written conclusions\n"
	if err := os.WriteFile(filepath.Join(dir, "EXPERIMENTS.md"), []byte(keep), 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	if err := Main(context.Background(), []string{"--quick", "--out", dir}, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	md, err := os.ReadFile(filepath.Join(dir, "EXPERIMENTS.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(md)
	wants := []string{"hand-written design notes", "between", "hand-written conclusions", "\nold v1\n", BeginMarkerV2, EndMarkerV2,
		"#### Final accuracy", "#### Paired difference to all pairs", "#### Paired difference to random", "#### Accuracy after each round",
		"#### The judge by round", "#### Language gates by round", "#### Cost per (seed, arm)", "Preliminary: 1 of 15 seeds"}
	for _, k := range ArmsV2 {
		wants = append(wants, ArmKeys[k])
	}
	for _, want := range wants {
		if !strings.Contains(s, want) {
			t.Errorf("EXPERIMENTS.md lacks %q", want)
		}
	}
	if strings.Contains(s, "\nold v2\n") || strings.Count(s, BeginMarkerV2) != 1 || strings.Count(s, BeginMarker) != 1 {
		t.Error("the v2 section was not replaced exactly once, or the v1 section was touched")
	}
	if strings.Contains(s, "NaN") {
		t.Error("report contains NaN")
	}
	wellFormedXML(t, filepath.Join(dir, "img", "v2-accuracy.svg"))
	resPath := filepath.Join(dir, "img", "v2-results.json")
	js, err := os.ReadFile(resPath)
	if err != nil {
		t.Fatal(err)
	}
	var res Results
	if err := json.Unmarshal(js, &res); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	cfg := QuickConfigV2()
	if len(res.Runs) != len(ArmsV2) {
		t.Fatalf("results.json: %d runs, want %d", len(res.Runs), len(ArmsV2))
	}
	by := map[string]RunResult{}
	for _, r := range res.Runs {
		by[r.Arm] = r
		if len(r.Rounds) != cfg.Task.Rounds {
			t.Fatalf("%s: %d rounds", r.Arm, len(r.Rounds))
		}
		for _, l := range res.Config.Task.Langs {
			if v, ok := r.Acc[l.Code]; !ok || v < 0 || v > 1 {
				t.Errorf("%s: accuracy of %s = %v (present %v)", r.Arm, l.Code, v, ok)
			}
			if _, ok := r.OwnAcc[l.Code]; ok != l.Conflict {
				t.Errorf("%s: own-preference accuracy of %s present %v", r.Arm, l.Code, ok)
			}
		}
		if r.Rounds[0].Pairs != res.Runs[0].Rounds[0].Pairs || r.Rounds[0].PairsCorrect["l1"] != res.Runs[0].Rounds[0].PairsCorrect["l1"] {
			t.Errorf("%s: round 0 differs from %s's: not shared", r.Arm, res.Runs[0].Arm)
		}
	}
	all, cg, orc := by[ArmAll], by[ArmCongrad], by[ArmOracle]
	for rd := 0; rd < cfg.Task.Rounds; rd++ {
		if all.Rounds[rd].Train != all.Rounds[rd].Pairs {
			t.Errorf("round %d: all pairs trained on %d of %d", rd, all.Rounds[rd].Train, all.Rounds[rd].Pairs)
		}
		for l, k := range orc.Rounds[rd].KeptBy {
			if orc.Rounds[rd].Correct[l] != k {
				t.Errorf("round %d: the oracle kept %d pairs of %s, %d correct", rd, k, l, orc.Rounds[rd].Correct[l])
			}
		}
		for _, a := range []string{ArmRandom, ArmMargin, ArmBalanced, ArmLoss, ArmOwnMean, ArmLESS} {
			r := by[a].Rounds[rd]
			want := int(math.Round(float64(cg.Rounds[rd].Train) / float64(cg.Rounds[rd].Pairs) * float64(r.Pairs)))
			if r.Train != want {
				t.Errorf("round %d: %s kept %d, want ConGrad's share %d", rd, a, r.Train, want)
			}
		}
	}
	r0 := all.Rounds[0]
	share := func(ls ...string) float64 {
		c, n := 0, 0
		for _, l := range ls {
			c, n = c+r0.PairsCorrect[l], n+r0.PairsBy[l]
		}
		return float64(c) / float64(n)
	}
	if h, lo := share("h1", "h2", "h3"), share("l1", "l2"); h <= lo {
		t.Errorf("round-0 judge: high-resource labels %.2f correct, low-resource %.2f: want the low-resource judge noisier", h, lo)
	}
	// --replot reproduces the generated section from results.json.
	again := t.TempDir()
	if err := Main(context.Background(), []string{"--replot", resPath, "--out", again}, io.Discard); err != nil {
		t.Fatal(err)
	}
	md2, err := os.ReadFile(filepath.Join(again, "EXPERIMENTS.md"))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := section(s, BeginMarkerV2, EndMarkerV2), section(string(md2), BeginMarkerV2, EndMarkerV2); a == "" || a != b {
		t.Error("--replot of results.json does not reproduce the report")
	}
}

// TestQuickSmokeV1 keeps task v1 (the committed issue-7 numbers) running:
// a few arms, the interference check and the fidelity study.
func TestQuickSmokeV1(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a small v1 experiment")
	}
	dir := t.TempDir()
	var log bytes.Buffer
	if err := Main(context.Background(), []string{"--task", "v1", "--quick", "--arms", "all,random,congrad,gate", "--out", dir}, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	md, err := os.ReadFile(filepath.Join(dir, "EXPERIMENTS.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(md)
	for _, want := range []string{BeginMarker, EndMarker, "### Held-out preference accuracy", "### Interference check", "### Sketch fidelity", "### Conflict map",
		ArmAll, ArmRandom, ArmCongrad, ArmGate} {
		if !strings.Contains(s, want) {
			t.Errorf("EXPERIMENTS.md lacks %q", want)
		}
	}
	if strings.Contains(s, "NaN") || strings.Contains(s, BeginMarkerV2) {
		t.Error("v1 report contains NaN or a v2 section")
	}
	wellFormedXML(t, filepath.Join(dir, "img", "accuracy.svg"))
	wellFormedXML(t, filepath.Join(dir, "img", "fidelity.svg"))
	js, err := os.ReadFile(filepath.Join(dir, "img", "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res Results
	if err := json.Unmarshal(js, &res); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if len(res.Runs) != 4 || len(res.Fidelity) != 2*len(QuickConfig().FidelityKs) || res.Config.Task.V2() {
		t.Errorf("results.json: %d runs, %d fidelity rows, v2 %v", len(res.Runs), len(res.Fidelity), res.Config.Task.V2())
	}
}

func TestMainBadFlags(t *testing.T) {
	if err := Main(context.Background(), []string{"--seeds", "x"}, io.Discard); err == nil {
		t.Error("bad --seeds: want an error")
	}
	if err := Main(context.Background(), []string{"--nope"}, io.Discard); err == nil {
		t.Error("unknown flag: want an error")
	}
	if err := Main(context.Background(), []string{"--task", "v3"}, io.Discard); err == nil {
		t.Error("unknown task: want an error")
	}
	if err := Main(context.Background(), []string{"--replot", "/nonexistent/*.json"}, io.Discard); err == nil {
		t.Error("--replot of nothing: want an error")
	}
}
