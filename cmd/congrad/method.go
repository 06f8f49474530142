package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/congrad-beam/congrad/congrad/keep"
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
			return bad("--gate=anchor needs --anchor=GLOB: sketch files of trusted dev pairs (congrad sketch)")
		}
	default:
		return bad("--gate=%s: want none, leave-out or anchor", o.gate)
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

// checkAnchor refuses --anchor files that cannot be compared with this
// run's sketches: no files, files of two runs, files its manifest does not
// vouch for (pipelines.ResolveInput), or a sketch manifest whose settings
// differ from those of the sketches select reads (select: their manifest;
// run: this run's own flags). Anchor files without a congrad manifest are
// read as given; their k and sketch spec are still checked from the files'
// metadata when the pipeline starts.
func (o *opts) checkAnchor(ctx context.Context, c pipelines.Config) error {
	_, am, adir, _, err := pipelines.ResolveInput(ctx, o.out, pipelines.OutSketches, o.anchor, "--anchor", nil)
	if err != nil {
		return fmt.Errorf("%w: %s", errUsage, oneLine(err))
	}
	if am == nil {
		return nil
	}
	if am.Stage != pipelines.StageSketch {
		return fmt.Errorf("%w: --anchor=%s: files of the %s stage (%s), want sketch files", errUsage, o.anchor, am.Stage, adir)
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
		return fmt.Errorf("%w: --anchor=%s: sketched with other settings than %s: %s; rerun congrad sketch on the anchor pairs with them",
			errUsage, o.anchor, from, strings.Join(diff, ", "))
	}
	return nil
}
