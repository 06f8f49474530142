package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/congrad/sketch"
	"github.com/congrad-beam/congrad/pipelines"
	"github.com/congrad-beam/congrad/transforms/filter"
)

// maxGroupSize bounds N of --score=group:N.
const maxGroupSize = 1 << 20

// parseScore reads --score: "pair" (0) or "group:N" (N).
func parseScore(v string) (int, error) {
	if v == "pair" {
		return 0, nil
	}
	rest, ok := strings.CutPrefix(v, "group:")
	if !ok {
		return 0, fmt.Errorf("want pair or group:N")
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 2 || n > maxGroupSize {
		return 0, fmt.Errorf("group:N wants an integer N in [2, %d]", maxGroupSize)
	}
	return n, nil
}

// validateMethod checks the method options of select and run (issue 13):
// --keep, --gate, --anchor and --score, each refused in one line naming it.
func (o *opts) validateMethod() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
	}
	switch keep.Rule(o.keepRule) {
	case keep.Positive, keep.Top, keep.GlobalTop, filter.NoiseAware:
	default:
		return bad("--keep=%s: want positive, top, global-top or noise-aware", o.keepRule)
	}
	switch o.gate {
	case pipelines.GateNone, pipelines.GateLeaveOut:
		if o.anchor != "" {
			return bad("--anchor=%s needs --gate=anchor (the anchor is only read by the anchor gate)", o.anchor)
		}
	case pipelines.GateAnchor:
		if strings.TrimSpace(o.anchor) == "" {
			if o.cmd == "run" {
				return bad("--gate=anchor needs --anchor=GLOB: pair files of trusted dev pairs (or their sketch files)")
			}
			return bad("--gate=anchor needs --anchor=GLOB: sketch files of trusted dev pairs (congrad sketch)")
		}
	default:
		return bad("--gate=%s: want none, leave-out or anchor", o.gate)
	}
	for _, f := range []string{"gate_boot", "gate_level"} {
		if o.gate == pipelines.GateNone && o.given(f) {
			return bad("--%s needs --gate=leave-out or --gate=anchor: it sets the gate's bootstrap interval", f)
		}
	}
	if o.keepRule != string(filter.NoiseAware) && o.given("noise_min_pairs") {
		return bad("--noise_min_pairs needs --keep=noise-aware: it sets that rule's per-language fit")
	}
	if o.gate != pipelines.GateNone && o.aggregate != "mean" {
		return bad("--gate=%s needs --aggregate=mean: the gate's interval resamples the pairs' mean", o.gate)
	}
	if _, err := parseScore(o.score); err != nil {
		return bad("--score=%s: %v", o.score, err)
	}
	return nil
}

// anchorSettings are the sketch settings an anchor must share with the
// sketches it is compared with: everything a sketch's values depend on
// (the model, the loss, the adapters, the sketch contract).
var anchorSettings = []string{"model", "beta", "alpha", "lora_rank", "max_len", "sketch", "k", "sketch_seed"}

// checkAnchor refuses --anchor files that cannot be this run's anchor, in
// one line naming the flag, before any pipeline is built:
//   - what the files are is read from their columns (pipelines.InspectAnchor):
//     all pair files or all sketch files, at least one row, sketch files
//     with the k and spec of the sketches they are compared with (select:
//     those --sketches' manifest records, else the flags; run: its flags);
//   - pair files: run sketches them in the pipeline (c.Select.AnchorPairs);
//     select has no model and refuses them, saying what to do;
//   - the manifest checks of every input (pipelines.ResolveInput): files of
//     two runs, files their manifest does not vouch for;
//   - sketch files whose sketch manifest records other settings than the
//     sketches select reads (select) or this run's flags (run).
func (o *opts) checkAnchor(ctx context.Context, c *pipelines.Config) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: --anchor=%s: %s", errUsage, o.anchor, fmt.Sprintf(format, a...))
	}
	var want map[string]string
	var from string
	switch o.cmd {
	case "run":
		want, from = pipelines.SketchSettings(c.Gradients), "this run's flags"
	default:
		_, sm, sdir, _, err := pipelines.ResolveInput(ctx, o.out, pipelines.OutSketches, o.sketches, "--sketches", nil)
		if err != nil || sm == nil {
			// The main sketches are checked (and refused) by openJob; without
			// a manifest only k and the spec can be compared, from the files.
			want, from = map[string]string{"k": strconv.Itoa(c.Select.Spec.K), "sketch": string(c.Select.Spec.Method),
				"sketch_seed": strconv.FormatUint(c.Select.Spec.Seed, 10)}, "--k/--sketch/--sketch_seed"
		} else {
			want, from = sm.Settings, sdir+"/"+pipelines.ManifestName(pipelines.StageSketch)
		}
	}
	spec := c.Select.Spec
	if k, err := strconv.Atoi(want["k"]); err == nil {
		spec.K = k
	}
	if m := want["sketch"]; m != "" {
		spec.Method = sketch.Method(m)
	}
	if sd, err := strconv.ParseUint(want["sketch_seed"], 10, 64); err == nil {
		spec.Seed = sd
	}
	info, err := pipelines.InspectAnchor(ctx, o.anchor, spec)
	if err != nil {
		return bad("%s", oneLine(err))
	}
	if info.Kind == pipelines.AnchorKindPairs {
		if o.cmd != "run" {
			return bad("%d pair file(s) (%d pairs): select cannot sketch pairs, it has no model; give them to congrad run --anchor, or sketch them first (congrad sketch --pairs=%s --out=DIR with the settings of --sketches) and pass --anchor=DIR/sketches-*",
				len(info.Files), info.Rows, o.anchor)
		}
		c.Select.AnchorPairs = true
	}
	if err := pipelines.AnchorNotOutput(ctx, o.cmd, o.out, o.anchor); err != nil {
		return fmt.Errorf("%w: %s", errUsage, oneLine(err))
	}
	_, am, adir, _, err := pipelines.ResolveInput(ctx, o.out, pipelines.InputAnchor, o.anchor, "--anchor", nil)
	if err != nil {
		return fmt.Errorf("%w: %s", errUsage, oneLine(err))
	}
	if am == nil || info.Kind == pipelines.AnchorKindPairs {
		return nil
	}
	if am.Stage != pipelines.StageSketch {
		return bad("files of the %s stage (%s), want sketch files", am.Stage, adir)
	}
	var diff []string
	for _, k := range anchorSettings {
		w, ok := want[k]
		if !ok {
			continue
		}
		if g := am.Settings[k]; g != w {
			diff = append(diff, fmt.Sprintf("%s=%s (want %s)", k, g, w))
		}
	}
	sort.Strings(diff)
	if len(diff) > 0 {
		return bad("sketched with other settings than %s: %s; rerun congrad sketch on the anchor pairs with them", from, strings.Join(diff, ", "))
	}
	return nil
}
