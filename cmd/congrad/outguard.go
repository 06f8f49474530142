package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/congrad-beam/congrad/pipelines"
)

// openJob takes --out for cmd (one run at a time per folder) and checks the
// inputs cmd reads against their manifests (pipelines.OpenJob). select then
// takes the sketch stage's settings from the sketches' manifest: a flag not
// given is set to the recorded value, a given flag that differs is refused.
// It returns cfg rebuilt with those settings and the resolved inputs. A dry
// run writes nothing, so it takes no lock (nil Job).
func openJob(ctx context.Context, cmd string, args []string, o *opts, cfg pipelines.Config, dry bool, stderr io.Writer) (*pipelines.Job, pipelines.Config, error) {
	if dry {
		return nil, cfg, nil
	}
	j, err := pipelines.OpenJob(ctx, cmd, pipelines.JobOptions{Out: o.out, Pairs: o.pairs, Sketches: o.sketches, Anchor: o.anchor,
		Argv: strings.TrimSpace("congrad " + cmd + " " + strings.Join(args, " ")), Warn: stderr})
	if errors.Is(err, pipelines.ErrNoInput) {
		return nil, cfg, fmt.Errorf("%w: %v", errUsage, err)
	}
	if err != nil {
		return nil, cfg, err
	}
	if settings, from := j.SketchSettings(); len(settings) > 0 {
		if err := adoptSettings(o, settings, from); err != nil {
			j.Close()
			return nil, cfg, err
		}
		if cfg, err = o.pipelineConfig(o.backendURL); err != nil {
			j.Close()
			return nil, cfg, err
		}
	}
	j.Apply(&cfg)
	return j, cfg, nil
}

// adoptSettings sets every flag named in settings that the user did not
// give (command line or --config) and refuses one given with another value.
func adoptSettings(o *opts, settings map[string]string, from string) error {
	given := map[string]bool{}
	o.fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	names := make([]string, 0, len(settings))
	for n := range settings {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		f := o.fs.Lookup(name)
		if f == nil {
			continue
		}
		want := settings[name]
		if given[name] {
			if got := f.Value.String(); got != want {
				return fmt.Errorf("%w: --%s=%s conflicts with the sketch stage's %s=%s (%s): drop --%s or rerun congrad sketch with it",
					errUsage, name, got, name, want, from, name)
			}
			continue
		}
		if err := o.fs.Set(name, want); err != nil {
			return fmt.Errorf("%s: %s=%q: %w", from, name, want, err)
		}
	}
	return nil
}
