// Command gradbench measures per-pair LP-DPO gradient extraction with device
// sketching on random weights of a given model shape. Built plainly it uses
// the pure-Go backend; built with -tags xla (cgo) it also accepts
// GOMLX_BACKEND=xla:cuda (or xla:/path/to/pjrt_c_api_cuda_plugin.so).
//
//	go run ./gpu/cmd/gradbench -model tiny -seq 64 -batch 4
//	GOMLX_BACKEND=xla:cuda gradbench -model gemma2-2b -seq 1024 -batch 4 -dtype bf16 -peak 989
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
	flag.Float64Var(&c.PeakTFLOPS, "peak", 989, "peak TFLOP/s for MFU (H100 SXM dense bf16: 989)")
	flag.Uint64Var(&c.Seed, "seed", 1, "weights, LoRA and sketch seed")
	asJSON := flag.Bool("json", false, "print the result as JSON")
	flag.Parse()
	r, err := bench.Run(c, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gradbench:", err)
		os.Exit(1)
	}
	if *asJSON {
		b, _ := json.MarshalIndent(r, "", "  ")
		fmt.Println(string(b))
		return
	}
	fmt.Print(r.Format())
}
