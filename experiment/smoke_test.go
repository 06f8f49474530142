package experiment

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
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

// TestQuickSmoke runs `experiment --quick` end to end. It asserts only that
// the run completes and the report is well-formed, never the numbers.
func TestQuickSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("smoke test runs the quick experiment (about a minute)")
	}
	dir := t.TempDir()
	keep := "# Experiments\n\nhand-written design notes\n\n" + BeginMarker + "\nold\n" + EndMarker + "\n\nhand-written conclusions\n"
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
	for _, want := range append([]string{"hand-written design notes", "hand-written conclusions", BeginMarker, EndMarker,
		"### Held-out preference accuracy", "### Interference check", "### Sketch fidelity", "### Conflict map"}, Arms...) {
		if !strings.Contains(s, want) {
			t.Errorf("EXPERIMENTS.md lacks %q", want)
		}
	}
	if strings.Contains(s, "\nold\n") || strings.Count(s, BeginMarker) != 1 {
		t.Error("generated section was not replaced exactly once")
	}
	if strings.Contains(s, "NaN") {
		t.Error("report contains NaN")
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
	if len(res.Runs) != len(Arms) || len(res.Fidelity) != 2*len(QuickConfig().FidelityKs) {
		t.Errorf("results.json: %d runs, %d fidelity rows", len(res.Runs), len(res.Fidelity))
	}
	for _, r := range res.Runs {
		for _, l := range res.Config.Task.Langs {
			if v, ok := r.Acc[l.Code]; !ok || v < 0 || v > 1 {
				t.Errorf("%s: accuracy of %s = %v (present %v)", r.Arm, l.Code, v, ok)
			}
		}
	}
}

func TestMainBadFlags(t *testing.T) {
	if err := Main(context.Background(), []string{"--seeds", "x"}, io.Discard); err == nil {
		t.Error("bad --seeds: want an error")
	}
	if err := Main(context.Background(), []string{"--nope"}, io.Discard); err == nil {
		t.Error("unknown flag: want an error")
	}
}
