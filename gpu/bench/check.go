package bench

import (
	"fmt"
	"math"
	"time"

	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/gpu/dpo"
	"github.com/congrad-beam/congrad/gpu/model"
)

// CheckResult compares the sketches the device computed (Extract) with
// sketches computed on the host by congrad/sketch from the exact per-pair
// gradients, which the same extractor returns from the device
// (ExactGradients): the check that the device's bucket/sign constants,
// scatter and layout match the host contract the select stage relies on.
type CheckResult struct {
	Pairs     int
	MaxRelErr float64 // max over pairs of ||s_dev - s_host|| / ||s_host||
	MinCosine float64
	Tol       float64 // MaxRelErr must not exceed it
	OK        bool
	Seconds   float64 // ExactGradients (one more compile) + host sketches
	Skipped   string  // why the check did not run, if it did not
}

// CheckTol is the tolerance for a compute dtype. f32: the two sketches sum
// the same float32 gradients in a different order (~1e-6 relative). bf16:
// the device scatter-adds in bf16 (8-bit significand), about d/k terms per
// bucket (~200 for Gemma-2-2B LoRA r=8, k=8192), so a few percent is
// rounding; a wrong bucket, sign or layout gives ~1.4 (uncorrelated
// sketches).
func CheckTol(dtype string) float64 {
	if dtype == "bf16" {
		return 0.1
	}
	return 1e-4
}

// CheckSketch runs the check on in, whose device sketches Extract returned
// as dev.
func CheckSketch(x *dpo.Extractor, cfg *model.Config, in []dpo.Input, dev []dpo.Output, tol float64) (CheckResult, error) {
	r := CheckResult{Pairs: len(in), Tol: tol, MinCosine: 1}
	t0 := time.Now()
	g, names, err := x.ExactGradients(in)
	if err != nil {
		return r, fmt.Errorf("check: exact gradients: %w", err)
	}
	params, err := model.LoRAParams(cfg, x.Options().LoRA)
	if err != nil {
		return r, err
	}
	if len(params) != len(names) {
		return r, fmt.Errorf("check: %d gradient tensors, LoRA options give %d", len(names), len(params))
	}
	for i, p := range params {
		if p.Name != names[i] {
			return r, fmt.Errorf("check: gradient tensor %d is %s, LoRA options give %s", i, names[i], p.Name)
		}
	}
	spec := x.Options().Sketch
	for i := range in {
		if dev[i].Err != "" {
			return r, fmt.Errorf("check: pair %s failed on the device: %s", in[i].PairID, dev[i].Err)
		}
		h, err := sketch.New(spec)
		if err != nil {
			return r, err
		}
		off := 0
		for _, p := range params {
			n := len(p.Value)
			if off+n > len(g[i]) {
				return r, fmt.Errorf("check: gradient of pair %d has %d values, LoRA needs more", i, len(g[i]))
			}
			if err := h.Add(p.Name, 0, g[i][off:off+n]); err != nil {
				return r, fmt.Errorf("check: host sketch of pair %d: %w", i, err)
			}
			off += n
		}
		host := h.Sketch()
		if len(host) != len(dev[i].Sketch) {
			return r, fmt.Errorf("check: device sketch has %d values, host %d", len(dev[i].Sketch), len(host))
		}
		var diff, nh, nd, dot float64
		for k := range host {
			a, b := float64(dev[i].Sketch[k]), float64(host[k])
			diff += (a - b) * (a - b)
			nh += b * b
			nd += a * a
			dot += a * b
		}
		rel := math.Sqrt(diff) / math.Max(math.Sqrt(nh), 1e-30)
		cos := dot / math.Max(math.Sqrt(nh*nd), 1e-30)
		if math.IsNaN(rel) {
			rel = math.Inf(1)
		}
		r.MaxRelErr = math.Max(r.MaxRelErr, rel)
		r.MinCosine = math.Min(r.MinCosine, cos)
	}
	r.OK = r.MaxRelErr <= tol
	r.Seconds = time.Since(t0).Seconds()
	return r, nil
}

// Line renders the check as gpu-check.sh prints it.
func (r CheckResult) Line() string {
	if r.Skipped != "" {
		return fmt.Sprintf("check=SKIPPED (%s)", r.Skipped)
	}
	verdict := "PASS"
	if !r.OK {
		verdict = "FAIL"
	}
	return fmt.Sprintf("check=%s device_vs_host_sketch pairs=%d max_rel_err=%.3g min_cosine=%.6f tol=%.3g check_s=%.1f",
		verdict, r.Pairs, r.MaxRelErr, r.MinCosine, r.Tol, r.Seconds)
}
