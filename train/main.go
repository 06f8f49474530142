package train

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/congrad-beam/congrad/gpu/model"
)

// ErrUsage marks command-line mistakes (the CLI exits with code 2).
var ErrUsage = errors.New("usage")

// bounds of train's numeric flags: a zero, a negative number, NaN or an
// absurd value is refused before the model loads.
var bounds = map[string][2]float64{
	"steps": {0, 1e9}, "epochs": {1, 1e6}, "batch": {1, 65536}, "lr": {0, 10}, "beta": {0, 100},
	"alpha": {0, 100}, "rank": {1, 4096}, "max_len": {0, 131072},
}

// open: the lower bound itself is refused.
var openLow = map[string]bool{"lr": true, "beta": true}

// Main is `congrad train`: LP-DPO LoRA training of a gpu/model model (the
// embedded tiny model by default, or an HF checkpoint directory) on
// kept-pairs Parquet files; the adapters are written as safetensors with
// PEFT names. --help goes to stdout, progress to log.
func Main(ctx context.Context, args []string, stdout, log io.Writer) error {
	return MainChecked(ctx, args, stdout, log, nil)
}

// InputCheck vets the --pairs glob before anything is read (the CLI passes
// the lake's manifest check: files of an unfinished or mixed run are
// refused). A nil check accepts any files.
type InputCheck func(ctx context.Context, glob string) error

// MainChecked is Main with an input check run after the flags are
// validated and before the pairs are read.
func MainChecked(ctx context.Context, args []string, stdout, log io.Writer, check InputCheck) error {
	fs := flag.NewFlagSet("congrad train", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	pairs := fs.String("pairs", "", "kept-pairs Parquet files, a glob (columns prompt, chosen, rejected; optional pair_id, lang)")
	out := fs.String("out", "", "output safetensors file for the LoRA adapters")
	ref := fs.String("model", "tiny", "model: tiny (the embedded model, weights from --base_seed) or an HF checkpoint directory")
	baseSeed := fs.Uint64("base_seed", 0, "seed of the tiny base model's weights (--model tiny only)")
	seed := fs.Uint64("seed", 1, "seed of LoRA init and batch order")
	steps := fs.Int("steps", 0, "optimiser steps, 0..1e9 (0: --epochs passes)")
	epochs := fs.Int("epochs", 1, "passes over the pairs when --steps is 0, 1..1000000")
	batch := fs.Int("batch", 32, "pairs per step, 1..65536")
	lr := fs.Float64("lr", 1e-3, "Adam learning rate, (0, 10]")
	beta := fs.Float64("beta", 0.1, "LP-DPO β, (0, 100]")
	alpha := fs.Float64("alpha", 0, "LP-DPO length penalty α, 0..100 (0: plain DPO)")
	rank := fs.Int("rank", 8, "LoRA rank, 1..4096 (LoRA alpha is 2·rank)")
	targets := fs.String("targets", "q_proj,v_proj", "comma-separated LoRA target modules")
	maxLen := fs.Int("max_len", 0, "tokens per sequence, 0..131072; longer pairs are rejected (0: min(512, max_position_embeddings))")
	usage := func(format string, a ...any) error {
		return fmt.Errorf("%w: congrad train: %s", ErrUsage, fmt.Sprintf(format, a...))
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fmt.Fprint(stdout, "Usage: congrad train --pairs=GLOB --out=FILE [--flag=value ...]\n\nLP-DPO LoRA training on kept pairs; writes the adapters as safetensors.\n\nFlags (default in parentheses):\n")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return err
		}
		return usage("%v (see 'congrad train --help')", err)
	}
	if fs.NArg() > 0 {
		return usage("unexpected arguments %q", fs.Args())
	}
	var bad error
	fs.VisitAll(func(f *flag.Flag) {
		b, ok := bounds[f.Name]
		if !ok || bad != nil {
			return
		}
		v, err := strconv.ParseFloat(f.Value.String(), 64)
		if err != nil || math.IsNaN(v) || v < b[0] || v > b[1] || (openLow[f.Name] && v == b[0]) {
			l := "["
			if openLow[f.Name] {
				l = "("
			}
			bad = usage("--%s=%s: want a value in %s%g, %g]", f.Name, f.Value, l, b[0], b[1])
		}
	})
	if bad != nil {
		return bad
	}
	if *pairs == "" || *out == "" {
		return usage("--pairs and --out are required")
	}
	files, err := filepath.Glob(*pairs)
	if err != nil {
		return usage("--pairs=%s: %v", *pairs, err)
	}
	if len(files) == 0 {
		return usage("--pairs: no files match %s", *pairs)
	}
	sort.Strings(files)
	if check != nil {
		if err := check(ctx, *pairs); err != nil {
			return fmt.Errorf("congrad train: %w", err)
		}
	}
	if err := checkOutFile(*out); err != nil {
		return usage("--out=%s: %v", *out, err)
	}
	if *ref == "tiny" {
		*ref = fmt.Sprintf("tiny:seed=%d", *baseSeed)
	} else if *baseSeed != 0 {
		return usage("--base_seed applies to --model tiny only")
	}
	m, err := model.Open(*ref)
	if err != nil {
		return fmt.Errorf("congrad train: %w", err)
	}
	var ps []Pair
	for _, f := range files {
		p, err := ReadPairsParquet(ctx, f)
		if err != nil {
			return err
		}
		ps = append(ps, p...)
	}
	lora := model.LoRAOptions{Rank: *rank, Targets: strings.Split(*targets, ",")}
	e, err := NewEngine(m, EngineOptions{Beta: *beta, Alpha: *alpha, LoRA: lora, MaxLen: *maxLen})
	if err != nil {
		return fmt.Errorf("congrad train: %w", err)
	}
	ds, err := e.NewDataset(ps)
	if err != nil {
		return fmt.Errorf("congrad train: %w", err)
	}
	for _, r := range ds.Rejected {
		fmt.Fprintf(log, "rejected pair %s: %s\n", r.ID, r.Reason)
	}
	fmt.Fprintf(log, "train: %s, %d pairs read, %d usable, %d rejected\n", m.Ref, len(ps), ds.Len(), len(ds.Rejected))
	opts := Options{LR: *lr, BatchSize: *batch, Steps: *steps, Epochs: *epochs, Seed: *seed,
		Progress: func(step int, loss float64) {
			if step%10 == 0 {
				fmt.Fprintf(log, "step %d loss %.4f\n", step, loss)
			}
		}}
	res, err := e.Train(ctx, ds, opts)
	if err != nil {
		return fmt.Errorf("congrad train: %w", err)
	}
	lo := e.Opts.LoRA
	meta := map[string]string{"congrad.lora_alpha": strconv.FormatFloat(lo.Alpha, 'g', -1, 64),
		"congrad.lora_rank": strconv.Itoa(lo.Rank), "congrad.lora_targets": strings.Join(lo.Targets, ","),
		"congrad.model": m.Ref, "congrad.beta": strconv.FormatFloat(e.Opts.Beta, 'g', -1, 64),
		"congrad.alpha": strconv.FormatFloat(e.Opts.Alpha, 'g', -1, 64)}
	if err := model.WriteSafetensors(*out, res.LoRA.Tensors(), meta); err != nil {
		return fmt.Errorf("congrad train: write %s: %w", *out, err)
	}
	fmt.Fprintf(log, "train: %d steps, final loss %.4f, adapters written to %s\n", len(res.Losses), res.Losses[len(res.Losses)-1], *out)
	return nil
}

// checkOutFile makes sure out can be written before hours of training: not
// a directory, and its directory exists (or is created) and takes files.
func checkOutFile(out string) error {
	if st, err := os.Stat(out); err == nil && st.IsDir() {
		return fmt.Errorf("is a directory; want a file name, e.g. %s", filepath.Join(out, "adapter_model.safetensors"))
	}
	dir := filepath.Dir(out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cannot create %s: %v", dir, errors.Unwrap(err))
	}
	f, err := os.CreateTemp(dir, ".congrad-write-check-*")
	if err != nil {
		return fmt.Errorf("cannot write in %s: %v", dir, errors.Unwrap(err))
	}
	f.Close()
	return os.Remove(f.Name())
}
