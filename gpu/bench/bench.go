// Package bench measures per-pair gradient extraction throughput (pairs/s,
// achieved FLOP/s, model-FLOP utilisation, sketch share of the time) and the
// backend's own matmul throughput as the baseline. cmd/gradbench and
// scripts/gpu-check.sh drive it; a test runs a tiny dry run.
package bench

import (
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/gpu/dpo"
	"github.com/congrad-beam/congrad/gpu/model"
)

// Config selects the model shape and the workload.
type Config struct {
	Model      string // "tiny", "10m", "gemma2-2b", "llama3-8b" or a path to a config.json
	SeqLen     int    // tokens per sequence (prompt+response), every pair padded to it
	Batch      int    // pairs per device call
	Steps      int    // timed device calls (after one warm-up call that compiles)
	LoRARank   int
	K          int     // sketch dimension
	DType      string  // "f32" (default) or "bf16"
	PeakTFLOPS float64 // for MFU; 989 = H100 SXM / H200 dense bf16 (see PeakTFLOPSFor)
	Seed       uint64
	// Check compares the device sketches of the benchmark batch with host
	// sketches of the exact gradients (see CheckSketch); one more compile.
	Check bool
	// Budget, when set, bounds the run: timed steps stop early (at least
	// one runs) and the optional phases (isolated sketch timing, matmul
	// baseline) are skipped when too little time is left. gpu-check.sh also
	// kills the process at its phase limit; figures are printed as each
	// phase ends, so a kill keeps what was measured.
	Budget time.Duration
}

// Result is one measurement.
type Result struct {
	Config         Config
	Backend        string
	Params         int64 // base model parameters
	LoRAParams     int
	CompileSeconds float64 // first call (compiles extract and grad-only graphs)
	PairsPerSecond float64
	FLOPsPerPair   float64 // model FLOPs: forward + activation backward, causal attention
	AchievedTFLOPS float64
	MFU            float64 // AchievedTFLOPS / PeakTFLOPS (0 when no peak given)
	SketchShare    float64 // (t_extract - t_gradonly) / t_extract, interleaved runs
	// SketchShareIsolated times the sketch subgraph alone on [B, d] inputs of
	// the same shapes: on a loaded CPU the difference above is mostly noise.
	SketchShareIsolated float64
	MatmulTFLOPS        float64 // the same backend's square-matmul throughput, same dtype
	RatioToMatmul       float64 // AchievedTFLOPS / MatmulTFLOPS
	PeakHostRSSMiB      float64 // Go heap+runtime
	DeviceMem           DeviceMem
	Check               CheckResult
	SecondsPerBatch     float64
	StepsRun            int
	SetupSeconds        float64 // random weights, extractor, constants
	TotalSeconds        float64
	Skipped             []string // optional phases left out for the budget
	LoadAvg             string   // /proc/loadavg at the end: other processes skew CPU figures
}

// PeakTFLOPSFor is the dense bf16 tensor-core peak of a GPU by its
// nvidia-smi name, in TFLOP/s (NVIDIA data sheets, without sparsity):
// H100 SXM5 and H200 (same GH100 compute at the same clocks) 989.4, H100
// NVL 835, H100 PCIe 756, A100 312, L40S 362. 0 for an unknown name.
func PeakTFLOPSFor(gpu string) float64 {
	g := strings.ToUpper(gpu)
	switch {
	case strings.Contains(g, "H200"), strings.Contains(g, "GH200"):
		return 989.4
	case strings.Contains(g, "H100") && strings.Contains(g, "NVL"):
		return 835
	case strings.Contains(g, "H100") && strings.Contains(g, "PCIE"):
		return 756
	case strings.Contains(g, "H100"):
		return 989.4
	case strings.Contains(g, "A100"):
		return 312
	case strings.Contains(g, "L40S"):
		return 362
	}
	return 0
}

// ModelConfig resolves a model name to a config.
func ModelConfig(name string) (*model.Config, error) {
	softcap := func(v float64) *float64 { return &v }
	window := 4096
	switch name {
	case "tiny":
		return model.TinyConfig(), nil
	case "10m": // ~9.9M parameters, byte vocabulary
		return model.ParseConfig([]byte(`{"model_type":"llama","vocab_size":259,"hidden_size":256,"intermediate_size":1024,
		"num_hidden_layers":10,"num_attention_heads":8,"num_key_value_heads":4,"max_position_embeddings":1024,"hidden_act":"silu"}`))
	case "gemma2-2b": // google/gemma-2-2b shapes
		c, err := model.ParseConfig([]byte(`{"model_type":"gemma2","vocab_size":256000,"hidden_size":2304,"intermediate_size":9216,
		"num_hidden_layers":26,"num_attention_heads":8,"num_key_value_heads":4,"head_dim":256,"max_position_embeddings":8192,
		"hidden_activation":"gelu_pytorch_tanh","query_pre_attn_scalar":256,"bos_token_id":2,"eos_token_id":1,"pad_token_id":0}`))
		if c != nil {
			c.AttnLogitSoftcapping, c.FinalLogitSoftcapping, c.SlidingWindow = softcap(50), softcap(30), &window
		}
		return c, err
	case "llama3-8b":
		return model.ParseConfig([]byte(`{"model_type":"llama","vocab_size":128256,"hidden_size":4096,"intermediate_size":14336,
		"num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,"max_position_embeddings":8192,
		"rope_theta":500000,"tie_word_embeddings":false,"hidden_act":"silu"}`))
	}
	if strings.HasSuffix(name, ".json") {
		return model.LoadConfig(name)
	}
	return nil, fmt.Errorf("bench: unknown model %q (tiny, 10m, gemma2-2b, llama3-8b, or a config.json path)", name)
}

// FLOPsPerPair counts model FLOPs for one pair (two sequences of t tokens):
// forward matmuls 2·(linear params + H·V) per token, causal attention
// 2·2·(t/2)·heads·head_dim per token and layer, and a backward pass through
// the activations of the same cost (frozen base weights get no gradient;
// LoRA terms are negligible). The reference forward is skipped with B=0.
func FLOPsPerPair(c *model.Config, t int) float64 {
	var lin float64
	for _, s := range c.WeightShapes() {
		if len(s.Dims) == 2 && strings.HasPrefix(s.Name, "model.layers.") {
			lin += float64(s.Dims[0] * s.Dims[1])
		}
	}
	perTok := 2*(lin+float64(c.HiddenSize*c.VocabSize)) +
		float64(c.NumHiddenLayers)*4*float64(t)/2*float64(c.NumAttentionHeads*c.HeadDim)
	return 2 * float64(t) * 2 * perTok
}

func dtypeOf(s string) (dtypes.DType, error) {
	switch s {
	case "", "f32":
		return dtypes.Float32, nil
	case "bf16":
		return dtypes.BFloat16, nil
	}
	return dtypes.InvalidDType, fmt.Errorf("bench: dtype %q (f32 or bf16)", s)
}

// Run builds a model with random weights and measures extraction. Phases,
// each logged to log as it ends: setup, compile (first Extract and
// GradNorms), timed steps (pairs/s, MFU, sketch share), check (device
// sketch = host sketch), isolated sketch timing, matmul baseline.
func Run(c Config, log io.Writer) (Result, error) {
	if c.Steps == 0 {
		c.Steps = 3
	}
	if c.K == 0 {
		c.K = 8192
	}
	start := time.Now()
	left := func() time.Duration {
		if c.Budget <= 0 {
			return time.Duration(math.MaxInt64)
		}
		return c.Budget - time.Since(start)
	}
	r := Result{Config: c}
	cfg, err := ModelConfig(c.Model)
	if err != nil {
		return r, err
	}
	if c.SeqLen < 8 || c.SeqLen > cfg.MaxPositionEmbeddings {
		return r, fmt.Errorf("bench: seq %d outside [8, %d]", c.SeqLen, cfg.MaxPositionEmbeddings)
	}
	dt, err := dtypeOf(c.DType)
	if err != nil {
		return r, err
	}
	stopCapture := captureBackendLog(log)
	captured := false
	defer func() {
		if !captured {
			stopCapture()
		}
	}()
	b, err := model.DefaultBackend()
	if err != nil {
		return r, err
	}
	r.Backend = b.Description()
	t0 := time.Now()
	m := &model.Model{Ref: "bench:" + c.Model, Config: cfg, Tok: model.ByteTokenizer{}, Weights: model.InitWeights(cfg, c.Seed), Backend: b}
	r.Params = cfg.ParamCount()
	x, err := dpo.NewExtractor(m, dpo.Options{Batch: c.Batch, MaxLen: c.SeqLen, DType: dt,
		LoRA:   model.LoRAOptions{Rank: c.LoRARank, Seed: c.Seed},
		Sketch: sketch.Spec{Method: sketch.CountSketch, K: c.K, Seed: c.Seed, Version: sketch.Version}})
	if err != nil {
		return r, err
	}
	r.LoRAParams = x.Dim()
	r.SetupSeconds = time.Since(t0).Seconds()
	fmt.Fprintf(log, "phase=setup model=%s params=%d lora_params=%d backend=%q s=%.1f\n", c.Model, r.Params, r.LoRAParams, r.Backend, r.SetupSeconds)
	in := Pairs(c.Batch, c.SeqLen)
	// The matmul baseline is measured before and after the extraction and
	// averaged, so a change in machine load during the run shows in both
	// (CPU runs); a budgeted (GPU) run measures it once, at the end.
	n := 512
	if cfg.HiddenSize >= 2048 {
		n = 4096
	}
	var mmBefore float64
	if c.Budget <= 0 {
		if mmBefore, err = MatmulTFLOPS(b, dt, n, 3); err != nil {
			return r, err
		}
	}
	t0 = time.Now()
	if _, err := x.Extract(in); err != nil {
		return r, err
	}
	if _, err := x.GradNorms(in); err != nil {
		return r, err
	}
	r.CompileSeconds = time.Since(t0).Seconds()
	fmt.Fprintf(log, "phase=compile s=%.1f (first Extract and GradNorms call: both graphs compiled)\n", r.CompileSeconds)
	// Extract and the grad-only pass alternate, so load from other processes
	// hits both alike and the sketch share is their difference under the same conditions.
	var rss, tx, tg float64
	var dev []dpo.Output
	t0 = time.Now()
	for i := 0; i < c.Steps; i++ {
		if i > 0 && c.Budget > 0 {
			// Keep time for the check (a compile of about half the first
			// call's) and the rest: stop stepping when a step would eat into it.
			perStep := (tx + tg) / float64(i)
			reserve := time.Duration((r.CompileSeconds/2 + 2*perStep + 20) * float64(time.Second))
			if left() < reserve {
				r.Skipped = append(r.Skipped, fmt.Sprintf("timed steps %d..%d", i+1, c.Steps))
				break
			}
		}
		st := time.Now()
		out, err := x.Extract(in)
		if err != nil {
			return r, err
		}
		if out[0].Err != "" {
			return r, fmt.Errorf("bench: pair failed: %s", out[0].Err)
		}
		dev = out
		tx += time.Since(st).Seconds()
		st = time.Now()
		if _, err := x.GradNorms(in); err != nil {
			return r, err
		}
		tg += time.Since(st).Seconds()
		r.StepsRun++
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		rss = math.Max(rss, float64(ms.Sys)/(1<<20))
	}
	tx, tg = tx/float64(r.StepsRun), tg/float64(r.StepsRun)
	r.SecondsPerBatch = tx
	r.PairsPerSecond = float64(c.Batch) / tx
	r.FLOPsPerPair = FLOPsPerPair(cfg, c.SeqLen)
	r.AchievedTFLOPS = r.FLOPsPerPair * r.PairsPerSecond / 1e12
	if c.PeakTFLOPS > 0 {
		r.MFU = r.AchievedTFLOPS / c.PeakTFLOPS
	}
	r.SketchShare = math.Max(0, (tx-tg)/tx)
	r.PeakHostRSSMiB = rss
	fmt.Fprintf(log, "phase=steps steps=%d s=%.1f s_per_batch=%.4f pairs_per_s=%.3f achieved_tflops=%.4f mfu=%.4f sketch_share=%.4f\n",
		r.StepsRun, time.Since(t0).Seconds(), r.SecondsPerBatch, r.PairsPerSecond, r.AchievedTFLOPS, r.MFU, r.SketchShare)

	if c.Check {
		r.Check, err = CheckSketch(x, cfg, in, dev, CheckTol(c.DType))
		if err != nil {
			return r, err
		}
	} else {
		r.Check.Skipped = "not asked (-check=false)"
	}
	fmt.Fprintf(log, "phase=check %s\n", r.Check.Line())

	if left() > 15*time.Second {
		ts, err := SketchSeconds(b, dt, x.Dim(), c.Batch, c.K, 5)
		if err != nil {
			return r, err
		}
		r.SketchShareIsolated = ts / tx
	} else {
		r.Skipped = append(r.Skipped, "isolated sketch timing")
	}
	if left() > 20*time.Second {
		mmAfter, err := MatmulTFLOPS(b, dt, n, 3)
		if err != nil {
			return r, err
		}
		if mmBefore > 0 {
			r.MatmulTFLOPS = (mmBefore + mmAfter) / 2
		} else {
			r.MatmulTFLOPS = mmAfter
		}
		r.RatioToMatmul = r.AchievedTFLOPS / r.MatmulTFLOPS
	} else {
		r.Skipped = append(r.Skipped, "matmul baseline")
	}
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		r.LoadAvg = strings.TrimSpace(string(la))
	}
	captured = true
	r.DeviceMem = stopCapture()
	if r.DeviceMem.Programs == 0 {
		if strings.HasPrefix(r.Backend, "xla") || strings.Contains(strings.ToLower(r.Backend), "pjrt") {
			r.DeviceMem.Unavailable = "the XLA backend logged no compiled memory statistics"
		} else {
			r.DeviceMem.Unavailable = fmt.Sprintf("backend %q runs on the host and reports no device memory; see peak_host_mem_mib", r.Backend)
		}
	}
	r.TotalSeconds = time.Since(start).Seconds()
	return r, nil
}

// Pairs builds b pairs whose sequences are exactly seqLen byte tokens
// ([BOS] prompt response [EOS]), with distinct contents per pair.
func Pairs(b, seqLen int) []dpo.Input {
	in := make([]dpo.Input, b)
	p := (seqLen - 2) / 2
	resp := seqLen - 2 - p
	for i := range in {
		fill := func(n int, c byte) string {
			s := make([]byte, n)
			for j := range s {
				s[j] = 'a' + byte((j*7+i*3+int(c))%26)
			}
			return string(s)
		}
		in[i] = dpo.Input{PairID: fmt.Sprintf("bench-%d", i), Prompt: fill(p, 0), Chosen: fill(resp, 1), Rejected: fill(resp, 2)}
	}
	return in
}

// MatmulTFLOPS measures the backend's [n,n]x[n,n] matmul throughput (the
// baseline for "achieved FLOP/s"), chaining 8 products per call so call
// overhead does not dominate.
func MatmulTFLOPS(b compute.Backend, dt dtypes.DType, n, reps int) (float64, error) {
	const chain = 8
	e, err := NewExec(b, func(a, m *Node) *Node {
		a, m = ConvertDType(a, dt), ConvertDType(m, dt)
		for i := 0; i < chain; i++ {
			a = MatMul(a, m)
		}
		return ConvertDType(ReduceAllSum(a), dtypes.Float32)
	})
	if err != nil {
		return 0, err
	}
	v := make([]float32, n*n)
	for i := range v {
		v[i] = 1 / float32(n) // keeps repeated products bounded
	}
	a := tensors.FromFlatDataAndDimensions(v, n, n)
	run := func() error {
		out, err := e.Exec(a, a)
		if err == nil {
			out[0].FinalizeAll()
		}
		return err
	}
	if err := run(); err != nil { // compile
		return 0, err
	}
	start := time.Now()
	for i := 0; i < reps; i++ {
		if err := run(); err != nil {
			return 0, err
		}
	}
	sec := time.Since(start).Seconds() / float64(reps)
	return chain * 2 * float64(n) * float64(n) * float64(n) / sec / 1e12, nil
}

// SketchSeconds times the countsketch subgraph the extractor appends after
// the backward pass (sign multiply, transpose, scatter-add, transpose) on
// device-resident inputs of shape [batch, d].
func SketchSeconds(b compute.Backend, dt dtypes.DType, d, batch, k, reps int) (float64, error) {
	e, err := NewExec(b, func(seed, idx, sg *Node) *Node {
		// The gradient is made on the device so no host transfer is timed.
		g := ConvertDType(Iota(seed.Graph(), shapes.Make(dtypes.Float32, batch, d), 1), dt)
		g = Add(g, ConvertDType(BroadcastToDims(seed, batch, d), dt))
		signed := Mul(g, BroadcastToDims(InsertAxes(ConvertDType(sg, dt), 0), batch, d))
		acc := Scatter(idx, Transpose(signed, 0, 1), shapes.Make(dt, k, batch), false, false)
		return ConvertDType(ReduceAllSum(Transpose(acc, 0, 1)), dtypes.Float32)
	})
	if err != nil {
		return 0, err
	}
	idx := make([]int32, d)
	sg := make([]float32, d)
	for j := range idx {
		idx[j] = int32((j * 7919) % k)
		sg[j] = float32(1 - 2*(j%2))
	}
	it := tensors.FromFlatDataAndDimensions(idx, d, 1)
	st := tensors.FromFlatDataAndDimensions(sg, d)
	run := func() error {
		out, err := e.Exec(float32(0), it, st)
		if err == nil {
			out[0].FinalizeAll()
		}
		return err
	}
	if err := run(); err != nil {
		return 0, err
	}
	// The iota+broadcast that make g are timed too: an upper bound.
	start := time.Now()
	for i := 0; i < reps; i++ {
		if err := run(); err != nil {
			return 0, err
		}
	}
	return time.Since(start).Seconds() / float64(reps), nil
}

// Format renders a result as the lines gpu-check.sh prints and docs/perf/gpu.md quotes.
func (r Result) Format() string {
	c := r.Config
	skipped := "none"
	if len(r.Skipped) > 0 {
		skipped = strings.Join(r.Skipped, "; ")
	}
	return fmt.Sprintf(`model=%s params=%d lora_params=%d seq=%d batch=%d dtype=%s k=%d backend=%q
setup_s=%.1f compile_s=%.2f steps=%d s_per_batch=%.4f pairs_per_s=%.3f total_s=%.1f skipped=%q
model_flops_per_pair=%.4g achieved_tflops=%.4f (%.2f GFLOP/s) mfu=%.4f (peak %.1f TFLOP/s)
sketch_share=%.4f sketch_share_isolated=%.5f matmul_tflops=%.4f ratio_to_matmul=%.3f peak_host_mem_mib=%.0f loadavg=%q
%s
%s
`, c.Model, r.Params, r.LoRAParams, c.SeqLen, c.Batch, orDefault(c.DType, "f32"), c.K, r.Backend,
		r.SetupSeconds, r.CompileSeconds, r.StepsRun, r.SecondsPerBatch, r.PairsPerSecond, r.TotalSeconds, skipped,
		r.FLOPsPerPair, r.AchievedTFLOPS, r.AchievedTFLOPS*1000, r.MFU, c.PeakTFLOPS,
		r.SketchShare, r.SketchShareIsolated, r.MatmulTFLOPS, r.RatioToMatmul, r.PeakHostRSSMiB, r.LoadAvg,
		r.DeviceMem.Line(), r.Check.Line())
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
