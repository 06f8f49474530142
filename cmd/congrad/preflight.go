package main

import (
	"context"
	"fmt"

	"github.com/congrad-beam/congrad/pipelines"
	"github.com/congrad-beam/congrad/transforms/lakeio"
)

// checkInputs lists every input glob of cmd before the pipeline is built, so
// a mistyped path fails in one line naming the flag instead of inside a failed
// bundle several screens into the runner's log. (lakeio still checks again on
// the workers, where the pipeline actually reads.)
func checkInputs(ctx context.Context, cmd string, c pipelines.Config) error {
	type input struct{ flag, glob string }
	var ins []input
	or := func(glob, def string) string {
		if glob != "" {
			return glob
		}
		return def
	}
	switch cmd {
	case "run", "generate":
		ins = append(ins, input{"--prompts", c.Prompts})
	case "sketch":
		ins = append(ins, input{"--pairs", or(c.Pairs, c.Glob(pipelines.OutPairs))})
	case "select":
		ins = append(ins,
			input{"--pairs", or(c.Pairs, c.Glob(pipelines.OutPairs))},
			input{"--sketches", or(c.Sketches, c.Glob(pipelines.OutSketches))})
	}
	for _, in := range ins {
		if in.glob == "" {
			return fmt.Errorf("%w: %s is required", errUsage, in.flag)
		}
		files, err := lakeio.Match(ctx, in.glob)
		if err != nil {
			return fmt.Errorf("%s %s: %w", in.flag, in.glob, err)
		}
		if len(files) == 0 {
			return fmt.Errorf("%w: %s: no files match %s", errUsage, in.flag, in.glob)
		}
	}
	return nil
}
