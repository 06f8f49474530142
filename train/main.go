package train

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/congrad-beam/congrad/gpu/model"
)

// Main is `congrad train`: LP-DPO LoRA training of a gpu/model model (the
// embedded tiny model by default, or an HF checkpoint directory) on a
// kept-pairs Parquet file; the adapters are written as safetensors with
// PEFT names. Progress goes to log.
func Main(ctx context.Context, args []string, log io.Writer) error {
	fs := flag.NewFlagSet("congrad train", flag.ContinueOnError)
	fs.SetOutput(log)
	pairs := fs.String("pairs", "", "kept-pairs Parquet file (columns prompt, chosen, rejected; optional pair_id, lang)")
	out := fs.String("out", "", "output safetensors file for the LoRA adapters")
	ref := fs.String("model", "tiny", "model: tiny (the embedded model, weights from --base-seed) or an HF checkpoint directory")
	baseSeed := fs.Uint64("base-seed", 0, "seed of the tiny base model's weights (--model tiny only)")
	seed := fs.Uint64("seed", 1, "seed of LoRA init and batch order")
	steps := fs.Int("steps", 0, "optimiser steps (0: --epochs passes)")
	epochs := fs.Int("epochs", 1, "passes over the pairs when --steps is 0")
	batch := fs.Int("batch", 32, "pairs per step")
	lr := fs.Float64("lr", 1e-3, "Adam learning rate")
	beta := fs.Float64("beta", 0.1, "LP-DPO β")
	alpha := fs.Float64("alpha", 0, "LP-DPO length penalty α (0: plain DPO)")
	rank := fs.Int("rank", 8, "LoRA rank (LoRA alpha is 2·rank)")
	targets := fs.String("targets", "q_proj,v_proj", "comma-separated LoRA target modules")
	maxLen := fs.Int("max-len", 0, "tokens per sequence; longer pairs are rejected (0: min(512, max_position_embeddings))")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pairs == "" || *out == "" {
		return fmt.Errorf("congrad train: --pairs and --out are required")
	}
	if *rank < 1 {
		return fmt.Errorf("congrad train: --rank %d must be >= 1", *rank)
	}
	if *ref == "tiny" {
		*ref = fmt.Sprintf("tiny:seed=%d", *baseSeed)
	} else if *baseSeed != 0 {
		return fmt.Errorf("congrad train: --base-seed applies to --model tiny only")
	}
	m, err := model.Open(*ref)
	if err != nil {
		return fmt.Errorf("congrad train: %w", err)
	}
	ps, err := ReadPairsParquet(ctx, *pairs)
	if err != nil {
		return err
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
