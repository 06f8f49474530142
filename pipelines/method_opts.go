package pipelines

import (
	"context"
	"fmt"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/congrad-beam/congrad/congrad/gate"
	"github.com/congrad-beam/congrad/congrad/vec"
	"github.com/congrad-beam/congrad/schemas"
	"github.com/congrad-beam/congrad/transforms/aggregate"
	"github.com/congrad-beam/congrad/transforms/filter"
)

// The settings of the method options of METHOD.md §8 beyond the choice of
// rule, gate and score (SelectOptions.GateBoot, GateLevel, NoiseMinPairs),
// and the anchor of the anchor gate when it is computed in the pipeline
// (congrad run with anchor pair files, SelectOptions.AnchorPairs).

// Upper bounds of the settings: a PoissonBoot holds 2B+2 numbers per
// language per split and costs B weights per pair.
const (
	MaxGateBoot      = 100000
	MaxNoiseMinPairs = 1 << 30
	// MaxRankBucketRows bounds SelectOptions.RankBucketRows.
	MaxRankBucketRows = 1 << 30
)

// validateSettings checks the bootstrap and noise-fit settings (zero: the
// defaults of congrad/gate) and the anchor's form.
func (o *SelectOptions) validateSettings() error {
	if o.GateBoot != 0 || o.GateLevel != 0 {
		if o.Gate == "" || o.Gate == GateNone {
			return fmt.Errorf("select: the gate's bootstrap settings (B=%d, level=%v) need a gate", o.GateBoot, o.GateLevel)
		}
		if o.GateBoot != 0 && (o.GateBoot < 10 || o.GateBoot > MaxGateBoot) {
			return fmt.Errorf("select: gate bootstrap B=%d: want 10..%d resamples", o.GateBoot, MaxGateBoot)
		}
		if o.GateLevel != 0 && !(o.GateLevel > 0 && o.GateLevel < 1) {
			return fmt.Errorf("select: gate level %v: want a two-sided confidence level in (0, 1)", o.GateLevel)
		}
	}
	if o.NoiseMinPairs != 0 {
		if o.Keep.Rule != filter.NoiseAware {
			return fmt.Errorf("select: noise-aware minimum pairs %d needs keep rule %s", o.NoiseMinPairs, filter.NoiseAware)
		}
		if o.NoiseMinPairs < 2 || o.NoiseMinPairs > MaxNoiseMinPairs {
			return fmt.Errorf("select: noise-aware minimum pairs %d: want 2..%d", o.NoiseMinPairs, MaxNoiseMinPairs)
		}
	}
	if o.AnchorPairs && o.Gate != GateAnchor {
		return fmt.Errorf("select: anchor pairs need gate %q", GateAnchor)
	}
	return nil
}

// boot is the gate's bootstrap (zero value: filter's default,
// gate.DefaultBootOptions).
func (o SelectOptions) boot() gate.BootOptions {
	if o.GateBoot == 0 && o.GateLevel == 0 {
		return gate.BootOptions{}
	}
	b := gate.DefaultBootOptions()
	if o.GateBoot != 0 {
		b.B = o.GateBoot
	}
	if o.GateLevel != 0 {
		b.Level = o.GateLevel
	}
	return b
}

// noise is the noise-aware rule's fit options (zero value: filter's
// default, gate.DefaultNoiseOptions with the fallback τ of Keep.Tau).
func (o SelectOptions) noise() gate.NoiseOptions {
	if o.NoiseMinPairs == 0 {
		return gate.NoiseOptions{}
	}
	n := gate.DefaultNoiseOptions()
	n.MinPairs = o.NoiseMinPairs
	n.FallbackTau = o.Keep.Tau
	return n
}

// anchorDirs is the anchor of the anchor gate as filter's singleton
// PCollection<filter.DirList>: the exact mean of the anchor sketches, read
// from the files of o.Anchor, or (congrad run with anchor pairs) of the
// sketches the pipeline computed from them.
func (o SelectOptions) anchorDirs(s beam.Scope, files filter.FileOptions) (beam.PCollection, error) {
	if o.anchorSketches.IsValid() {
		return anchorOfSketches(s.Scope("congrad.Anchor"), o.anchorSketches, files.K), nil
	}
	if o.AnchorPairs {
		return beam.PCollection{}, fmt.Errorf("select: anchor %s: pair files are sketched by congrad run only (BuildRun); select needs sketch files", o.Anchor)
	}
	splits, err := SketchFiles(s.Scope("congrad.Anchor"), o.Anchor, o)
	if err != nil {
		return beam.PCollection{}, fmt.Errorf("select: anchor: %w", err)
	}
	return filter.AnchorFiles(s, splits, files), nil
}

// anchorOfSketches is filter.AnchorFiles for sketches in a PCollection: the
// exact mean (accum.Mean, as the file path) of every anchor sketch, all
// languages together, as one direction named gate.AnchorLang. A sketch
// that is not usable fails the job, as in AnchorFiles.
//
//	PCollection<schemas.Sketch> -> singleton PCollection<filter.DirList>
func anchorOfSketches(s beam.Scope, sketches beam.PCollection, k int) beam.PCollection {
	relabeled := beam.ParDo(s, &anchorSketchFn{K: k}, sketches)
	dirs := aggregate.PerLanguage(s, relabeled, aggregate.Options{Method: aggregate.Mean, K: k})
	return filter.CollectDirs(s, dirs)
}

// anchorSketchFn checks one anchor sketch and files it under gate.AnchorLang.
type anchorSketchFn struct{ K int }

func (f *anchorSketchFn) ProcessElement(_ context.Context, sk schemas.Sketch) (schemas.Sketch, error) {
	var why string
	switch {
	case len(sk.Values) != f.K:
		why = fmt.Sprintf("%d values, want k=%d", len(sk.Values), f.K)
	case vec.CheckFinite(sk.Values) != nil:
		why = "non-finite sketch value"
	case vec.Norm(sk.Values) == 0:
		why = "zero sketch"
	}
	if why != "" {
		return sk, fmt.Errorf("select: anchor pair %q: %s: the anchor is a trusted set and must be whole", sk.PairID, why)
	}
	sk.Lang = gate.AnchorLang
	return sk, nil
}

// anchorDeadFn fails the job on an anchor pair the gradient stage could not
// sketch: a silently smaller anchor is not the trusted set the user named.
type anchorDeadFn struct{}

func (anchorDeadFn) ProcessElement(d schemas.DeadLetter) error {
	return fmt.Errorf("select: anchor pair %q could not be sketched (%s: %s): the anchor is a trusted set and must be whole", d.Source, d.Stage, d.Reason)
}

func init() {
	register.DoFn2x2[context.Context, schemas.Sketch, schemas.Sketch, error](&anchorSketchFn{})
	register.DoFn1x1[schemas.DeadLetter, error](&anchorDeadFn{})
}
