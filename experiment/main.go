package experiment

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Main is the experiment command (`go run ./experiment/cmd/experiment`,
// `make experiment`): it runs the full study, or with --quick the CI smoke
// version, and writes the report into --out.
func Main(ctx context.Context, args []string, log io.Writer) error {
	fs := flag.NewFlagSet("experiment", flag.ContinueOnError)
	fs.SetOutput(log)
	quick := fs.Bool("quick", false, "smoke-test size: one seed, short training, two sketch sizes (< 5 min)")
	out := fs.String("out", "", "directory for EXPERIMENTS.md and img/ (default docs; with --quick out/experiment-quick, so a smoke run never overwrites the committed report)")
	seeds := fs.String("seeds", "", "comma-separated seeds (default 1..15, see --n-seeds; quick: 1)")
	nSeeds := fs.Int("n-seeds", 0, "use seeds 1..N (default 15; quick 1); --seeds overrides it")
	evalPairs := fs.Int("eval-pairs", 0, "held-out pairs per language (default 1000; quick 50)")
	noFidelity := fs.Bool("no-fidelity", false, "skip the sketch-fidelity study")
	arms := fs.String("arms", "", "comma-separated arms to train (default all): all,random,margin,balanced,loss,ownmean,less,congrad,ema,top,noise,loo,gate,gategroup,group,anchor,oracle")
	noAlone := fs.Bool("no-alone", false, "skip the per-language alone runs (interference check)")
	replot := fs.String("replot", "", "rewrite the report from a results.json of an earlier run, without training")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		*out = "docs"
		if *quick {
			*out = filepath.Join("out", "experiment-quick")
		}
	}
	if *replot != "" {
		data, err := os.ReadFile(*replot)
		if err != nil {
			return fmt.Errorf("experiment: --replot: %w", err)
		}
		var res Results
		if err := json.Unmarshal(data, &res); err != nil {
			return fmt.Errorf("experiment: --replot %s: %w", *replot, err)
		}
		return res.Write(*out)
	}
	cfg := DefaultConfig()
	if *quick {
		cfg = QuickConfig()
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
