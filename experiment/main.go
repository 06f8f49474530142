package experiment

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
)

// Main is the experiment command (`go run ./experiment/cmd/experiment`,
// `make experiment`): it runs the full study, or with --quick the CI smoke
// version, and writes the report into --out.
func Main(ctx context.Context, args []string, log io.Writer) error {
	fs := flag.NewFlagSet("experiment", flag.ContinueOnError)
	fs.SetOutput(log)
	task := fs.String("task", "v2", "task version: v2 (issue 13: Bradley–Terry judge, partial-bias conflict languages, self-rewarding rounds) or v1 (issue 7: one round, flat flips, reversed conflict languages)")
	quick := fs.Bool("quick", false, "smoke-test size: one seed, short training, two sketch sizes (< 5 min)")
	out := fs.String("out", "", "directory for EXPERIMENTS.md and img/ (default docs; with --quick out/experiment-quick, so a smoke run never overwrites the committed report)")
	seeds := fs.String("seeds", "", "comma-separated seeds (default 1..15, see --n-seeds; quick: 1)")
	nSeeds := fs.Int("n-seeds", 0, "use seeds 1..N (default 15; quick 1); --seeds overrides it")
	evalPairs := fs.Int("eval-pairs", 0, "held-out pairs per language (default 1000; quick 50)")
	noFidelity := fs.Bool("no-fidelity", false, "skip the sketch-fidelity study")
	arms := fs.String("arms", "", "comma-separated arms to train (default all): all,random,margin,balanced,loss,ownmean,less,congrad,ema,top,noise,loo,gate,gategroup,group,anchor,oracle")
	noAlone := fs.Bool("no-alone", false, "skip the per-language alone runs (interference check)")
	replot := fs.String("replot", "", "rewrite the report without training from the results.json of earlier runs: a comma-separated list of files or globs (chunks of seeds, extra arms) is merged, each (arm, seed) once")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("experiment: --cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("experiment: --cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if *out == "" {
		*out = "docs"
		if *quick {
			*out = filepath.Join("out", "experiment-quick")
		}
	}
	if *replot != "" {
		paths, err := expandPaths(*replot)
		if err != nil {
			return fmt.Errorf("experiment: --replot: %w", err)
		}
		res, err := MergeResults(paths)
		if err != nil {
			return fmt.Errorf("experiment: --replot: %w", err)
		}
		if err := res.Write(*out); err != nil {
			return err
		}
		fmt.Fprintf(log, "experiment: %d runs over %d seeds from %d files; report in %s/EXPERIMENTS.md\n", len(res.Runs), len(res.Config.Seeds), len(paths), *out)
		return nil
	}
	var cfg Config
	switch *task {
	case "v1":
		cfg = DefaultConfig()
		if *quick {
			cfg = QuickConfig()
		}
	case "v2":
		cfg = DefaultConfigV2()
		if *quick {
			cfg = QuickConfigV2()
		}
	default:
		return fmt.Errorf("experiment: --task %q: want v1 or v2", *task)
	}
	if *nSeeds < 0 || *evalPairs < 0 {
		return fmt.Errorf("experiment: --n-seeds and --eval-pairs must be positive")
	}
	if *nSeeds > 0 {
		cfg.Seeds = nil
		for i := 1; i <= *nSeeds; i++ {
			cfg.Seeds = append(cfg.Seeds, uint64(i))
		}
	}
	if *evalPairs > 0 {
		cfg.Task.EvalPairs = *evalPairs
	}
	if *arms != "" {
		cfg.Arms = strings.Split(*arms, ",")
	}
	if *noFidelity {
		cfg.FidelityKs = nil
	}
	if *seeds != "" {
		cfg.Seeds = nil
		for _, s := range strings.Split(*seeds, ",") {
			v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
			if err != nil {
				return fmt.Errorf("experiment: --seeds: %q: %w", s, err)
			}
			cfg.Seeds = append(cfg.Seeds, v)
		}
	}
	if *noAlone {
		cfg.Alone = false
	}
	res, err := Run(ctx, cfg, log)
	if err != nil {
		return err
	}
	if err := res.Write(*out); err != nil {
		return err
	}
	fmt.Fprintf(log, "experiment: done in %s; report in %s/EXPERIMENTS.md\n", res.Elapsed.Round(1e9), *out)
	return nil
}
