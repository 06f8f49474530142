// Command gradbench measures per-pair LP-DPO gradient extraction with device
// sketching on random weights of a given model shape. Built plainly it uses
// the pure-Go backend; built with -tags xla (cgo) it also accepts
// GOMLX_BACKEND=xla:cuda (or xla:/path/to/pjrt_c_api_cuda_plugin.so).
//
//	go run ./gpu/cmd/gradbench -model tiny -seq 64 -batch 4
//	GOMLX_BACKEND=xla:/path/xla_cuda_plugin.so gradbench -model gemma2-2b -seq 1024 -batch 4 -dtype bf16 -peak 989.4 -budget 5m
//
// It prints one line per phase as the phase ends (setup, compile, steps,
// check) and a summary: pairs/s, model FLOPs per pair, MFU = achieved
// FLOP/s / -peak, sketch share, peak device memory as the backend reports it,
// and the device-vs-host sketch check (exit status 3 when the check fails).
// scripts/gpu-check.sh drives it; docs/perf/gpu.md explains every figure.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/congrad-beam/congrad/gpu/bench"
)

func main() {
	var c bench.Config
	flag.StringVar(&c.Model, "model", "tiny", "tiny | 10m | gemma2-2b | llama3-8b | path/to/config.json")
	flag.IntVar(&c.SeqLen, "seq", 64, "tokens per sequence")
	flag.IntVar(&c.Batch, "batch", 4, "pairs per device call")
	flag.IntVar(&c.Steps, "steps", 3, "timed device calls")
	flag.IntVar(&c.LoRARank, "rank", 8, "LoRA rank (targets q_proj, v_proj)")
	flag.IntVar(&c.K, "k", 8192, "sketch dimension")
	flag.StringVar(&c.DType, "dtype", "f32", "f32 | bf16")
	flag.Float64Var(&c.PeakTFLOPS, "peak", 0, "peak TFLOP/s for MFU; 0: from -gpu (dense bf16: H100 SXM and H200 989.4, H100 NVL 835, H100 PCIe 756), else 989.4")
	gpu := flag.String("gpu", "", "GPU name as nvidia-smi prints it, to pick -peak")
	flag.Uint64Var(&c.Seed, "seed", 1, "weights, LoRA and sketch seed")
	flag.BoolVar(&c.Check, "check", true, "compare the device sketches with host sketches of the exact gradients")
	flag.DurationVar(&c.Budget, "budget", 0, "time limit: fewer timed steps and no optional phases when short (0: none)")
	asJSON := flag.Bool("json", false, "print the result as JSON")
	flag.Parse()
	if c.PeakTFLOPS <= 0 {
		if c.PeakTFLOPS = bench.PeakTFLOPSFor(*gpu); c.PeakTFLOPS == 0 {
			c.PeakTFLOPS = 989.4
			if *gpu != "" {
				fmt.Fprintf(os.Stderr, "gradbench: no peak figure for GPU %q; MFU against 989.4 TFLOP/s (H100 SXM / H200 dense bf16), set -peak\n", *gpu)
			}
		}
	}
	r, err := bench.Run(c, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gradbench:", err)
		os.Exit(1)
	}
	if *asJSON {
		b, _ := json.MarshalIndent(r, "", "  ")
		fmt.Println(string(b))
	} else {
		fmt.Print(r.Format())
	}
	if c.Check && !r.Check.OK {
		os.Exit(3)
	}
}
