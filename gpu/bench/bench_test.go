package bench

import (
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/congrad-beam/congrad/gpu/model"
)

func TestDryRunTiny(t *testing.T) {
	r, err := Run(Config{Model: "tiny", SeqLen: 32, Batch: 2, Steps: 1, LoRARank: 2, K: 64, PeakTFLOPS: 989}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if r.PairsPerSecond <= 0 || r.AchievedTFLOPS <= 0 || r.MatmulTFLOPS <= 0 || math.IsNaN(r.SketchShare) || r.SketchShareIsolated <= 0 || r.LoRAParams == 0 {
		t.Fatalf("result %+v", r)
	}
	if !strings.Contains(r.Format(), "pairs_per_s=") {
		t.Fatal(r.Format())
	}
}

func TestModelConfigs(t *testing.T) {
	for name, lo := range map[string]int64{"10m": 9_000_000, "gemma2-2b": 2_500_000_000, "llama3-8b": 7_500_000_000} {
		c, err := ModelConfig(name)
		if err != nil {
			t.Fatal(err)
		}
		if p := c.ParamCount(); p < lo || p > lo*13/10 {
			t.Errorf("%s: %d params", name, p)
		}
	}
	if _, err := ModelConfig("nope"); err == nil {
		t.Error("unknown model accepted")
	}
	// FLOPs grow with sequence length and include attention.
	c := model.TinyConfig()
	if FLOPsPerPair(c, 128) <= 2*FLOPsPerPair(c, 64) {
		t.Error("attention FLOPs missing")
	}
}

// The CPU dry run of scripts/gpu-check.sh: the script itself, tiny shapes,
// Go backend. Skipped when bash is unavailable.
func TestGPUCheckScriptDryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	if _, err := exec.LookPath("bash"); err != nil || runtime.GOOS != "linux" {
		t.Skip("needs bash on linux")
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "gpu-check.sh"), "--dry-run")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GPU_CHECK_OUT="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("gpu-check.sh --dry-run: %v\n%s", err, out)
	}
	for _, want := range []string{"pairs_per_s=", "mfu=", "sketch_share=", "matmul_tflops="} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
