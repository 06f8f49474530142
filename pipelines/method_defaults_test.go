package pipelines

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/congrad-beam/congrad/transforms/lakeio"
)

// goldenDefaults holds the SHA-256 of every output file of select with the
// default method options (pair scoring, no gate, the positive/top/global-top
// rules, mean and ema), recorded by the code before the issue-13 method
// options were wired in. The method options must leave these bytes alone.
// Regenerate (only for an intended change of the default outputs) with
// CONGRAD_UPDATE_GOLDEN=1.
const goldenDefaults = "testdata/select_defaults.sha256.json"

func TestDefaultOutputsUnchanged(t *testing.T) {
	pairs, sks, _ := synthLake(t, 30)
	got := map[string]string{}
	for _, variant := range []string{"positive", "top", "global-top", "ema"} {
		dir := t.TempDir()
		writeLake(t, dir, pairs, sks)
		before := outputs(t, dir)
		runSelect(t, selectConfig(dir, variant))
		for name, b := range outputs(t, dir) {
			if _, in := before[name]; in {
				continue
			}
			sum := sha256.Sum256(b)
			got["files/"+variant+"/"+name] = hex.EncodeToString(sum[:])
		}
		// The in-memory path (congrad run): sketches as a PCollection.
		mem := t.TempDir()
		p, s := beam.NewPipelineWithRoot()
		c := selectConfig(mem, variant)
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		sel, err := Select(s, beam.CreateList(s, pairs), beam.CreateList(s, sks), c.Select)
		if err != nil {
			t.Fatal(err)
		}
		for name, col := range map[string]beam.PCollection{OutKept: sel.Kept, OutDropped: sel.Dropped,
			OutDecisions: sel.Decisions, OutDeadSelect: sel.Dead} {
			lakeio.Write(s, mem+"/"+name, col, lakeio.WriteOptions{Shards: 2})
		}
		if err := ptest.Run(p); err != nil {
			t.Fatal(err)
		}
		for name, b := range outputs(t, mem) {
			sum := sha256.Sum256(b)
			got["memory/"+variant+"/"+name] = hex.EncodeToString(sum[:])
		}
	}
	if os.Getenv("CONGRAD_UPDATE_GOLDEN") == "1" {
		b, _ := json.MarshalIndent(got, "", "  ")
		if err := os.WriteFile(goldenDefaults, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d files)", goldenDefaults, len(got))
		return
	}
	b, err := os.ReadFile(goldenDefaults)
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]string
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for n := range want {
		names[n] = true
	}
	for n := range got {
		names[n] = true
	}
	var sorted []string
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, n := range sorted {
		if want[n] != got[n] {
			t.Errorf("%s: sha256 %s, want %s (default outputs changed)", filepath.ToSlash(n), got[n], want[n])
		}
	}
	if len(want) < 20 {
		t.Fatalf("golden lists only %d files", len(want))
	}
}
