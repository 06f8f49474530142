// Package congrad is the ConGrad algorithm with no Beam and no model in it
// (METHOD.md §3–§7). The work lives in its sub-packages:
//
//   - vec: host vector maths on []float32 (float64 accumulation)
//   - sketch: the linear gradient sketches (countsketch, gaussian); a public,
//     documented contract (docs/SKETCH.md)
//   - accum: mergeable per-language accumulators (exact mean, EMA)
//   - pcgrad: cross-lingual gradient surgery into a consensus direction
//   - keep: the keep rules of the conflict filter (positive, top, global-top)
//   - gate: variants beyond the paper's pair filter (noise-aware per-language
//     thresholds, leave-own-language-out and anchor language gates with
//     bootstrap intervals, group scoring); not wired into the pipeline yet
//
// The Beam transforms wrap these packages; nothing here imports Beam or GoMLX.
package congrad
