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
	"time"

	"k8s.io/klog/v2"

	"github.com/congrad-beam/congrad/gpu/model"
)

func TestDryRunTiny(t *testing.T) {
	r, err := Run(Config{Model: "tiny", SeqLen: 32, Batch: 2, Steps: 1, LoRARank: 2, K: 64, PeakTFLOPS: 989, Check: true}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if r.PairsPerSecond <= 0 || r.AchievedTFLOPS <= 0 || r.MatmulTFLOPS <= 0 || math.IsNaN(r.SketchShare) || r.SketchShareIsolated <= 0 || r.LoRAParams == 0 {
		t.Fatalf("result %+v", r)
	}
	// The device sketch check ran and passed; the Go backend has no device
	// memory, and says so.
	if !r.Check.OK || r.Check.Pairs != 2 || r.Check.MaxRelErr > r.Check.Tol || r.Check.MinCosine < 0.9999 {
		t.Errorf("check %+v", r.Check)
	}
	if r.DeviceMem.Unavailable == "" || !strings.Contains(r.Format(), "device_peak_mem=unavailable (") {
		t.Errorf("device memory %+v", r.DeviceMem)
	}
	for _, want := range []string{"pairs_per_s=", "mfu=", "sketch_share=", "check=PASS", "steps=1 "} {
		if !strings.Contains(r.Format(), want) {
			t.Errorf("format lacks %q:\n%s", want, r.Format())
		}
	}
}

// TestBudgetStopsEarly: with a budget already spent, one timed step runs
// and the optional phases are skipped; the check (required) still runs.
func TestBudgetStopsEarly(t *testing.T) {
	r, err := Run(Config{Model: "tiny", SeqLen: 32, Batch: 2, Steps: 50, LoRARank: 2, K: 64, Check: true, Budget: time.Nanosecond}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if r.StepsRun != 1 || len(r.Skipped) != 3 || r.MatmulTFLOPS != 0 || !r.Check.OK {
		t.Fatalf("steps %d skipped %q matmul %g check %+v", r.StepsRun, r.Skipped, r.MatmulTFLOPS, r.Check)
	}
}

func TestParseXLAMemStats(t *testing.T) {
	// go-xla's line (compute/xla/executable.go, go-humanize SI units).
	line := `I1201 03:50:00.123456   12345 executable.go:95] Memory usage: On Device: [Code:1.2 MB, Inputs:10 GB, Outputs:5.0 kB, Aliases:2.0 GB, Temporary:3.4 GB]; On Host: [Code:0 B, Inputs:0 B, Outputs:0 B, Aliases:0 B, Temporary:99 GB]`
	got, ok := parseXLAMemStats(line)
	want := int64(1.2e6 + 10e9 + 5e3 - 2e9 + 3.4e9)
	if !ok || math.Abs(float64(got-want)) > 1 {
		t.Fatalf("got %d %v, want %d", got, ok, want)
	}
	if _, ok := parseXLAMemStats("I1201 graph.go:1] Graph.RunWithBuffers: 26ms elapsed"); ok {
		t.Error("parsed a line without memory statistics")
	}
}

// TestCaptureBackendLog: klog output (go-xla logs through klog) reaches the
// capture, which keeps the largest program and forwards the line.
func TestCaptureBackendLog(t *testing.T) {
	var buf strings.Builder
	stop := captureBackendLog(&buf)
	klog.Infof("Memory usage: On Device: [Code:0 B, Inputs:1.0 GB, Outputs:0 B, Aliases:0 B, Temporary:1.0 GB]; On Host: [Code:0 B]")
	klog.Infof("Memory usage: On Device: [Code:0 B, Inputs:1.0 GB, Outputs:0 B, Aliases:0 B, Temporary:500 MB]; On Host: [Code:0 B]")
	klog.Infof("Compiled in 1s")
	d := stop()
	if d.Programs != 2 || math.Abs(d.PeakMiB-2e9/(1<<20)) > 0.01 || !strings.Contains(d.Line(), "device_peak_mem_mib=1907") {
		t.Fatalf("%+v %s", d, d.Line())
	}
	if strings.Count(buf.String(), "Memory usage") != 2 || strings.Contains(buf.String(), "Compiled in") {
		t.Errorf("forwarded:\n%s", buf.String())
	}
}

func TestPeakTFLOPSFor(t *testing.T) {
	for name, want := range map[string]float64{
		"NVIDIA H200": 989.4, "NVIDIA H100 80GB HBM3": 989.4, "NVIDIA H100 PCIe": 756, "NVIDIA H100 NVL": 835,
		"NVIDIA A100-SXM4-80GB": 312, "Tesla T4": 0,
	} {
		if got := PeakTFLOPSFor(name); got != want {
			t.Errorf("%s: %g, want %g", name, got, want)
		}
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

// The CPU dry run of scripts/gpu-check.sh: the script itself, its phases
// and time limits, tiny shapes, Go backend. Skipped when bash is
// unavailable.
func TestGPUCheckScriptDryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	if _, err := exec.LookPath("bash"); err != nil || runtime.GOOS != "linux" {
		t.Skip("needs bash on linux")
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(t.TempDir(), "gradbench")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/gradbench").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	script := func(env ...string) (string, int) {
		cmd := exec.Command("bash", filepath.Join(root, "scripts", "gpu-check.sh"), "--dry-run")
		cmd.Dir = root
		cmd.Env = append(append(os.Environ(), "GPU_CHECK_OUT="+t.TempDir(), "GRADBENCH="+bin), env...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	out, code := script()
	if code != 0 {
		t.Fatalf("gpu-check.sh --dry-run: exit %d\n%s", code, out)
	}
	for _, want := range []string{"pairs_per_s=", "mfu=", "sketch_share=", "matmul_tflops=", "check=PASS",
		"device_peak_mem=unavailable", "nvidia_smi_peak_mem_mib=unavailable", "== summary", "gpu-check: done"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The time limit is enforced: a benchmark that runs past its phase
	// limit (at most 10 s of a 25 s budget) is killed there and the script
	// fails saying so. The stand-in binary never finishes, so this does not
	// depend on how fast the machine runs a real model (the 10M model once
	// compiled for longer than 25 s here; a faster VM ran it, budget-trimmed,
	// in 6 s).
	hang := filepath.Join(t.TempDir(), "gradbench-hangs")
	if err := os.WriteFile(hang, []byte("#!/bin/sh\nexec sleep 300\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, code = script("GPU_CHECK_BUDGET_S=25", "GRADBENCH="+hang)
	if code != 124 && code != 137 || !strings.Contains(out, "hit its") {
		t.Fatalf("over-budget run: exit %d\n%s", code, out)
	}
	if d := time.Since(start); d > 25*time.Second {
		t.Errorf("over-budget run took %v, budget 25 s", d)
	}
}
