package train

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"

	"github.com/congrad-beam/congrad/gpu/model"
)

// Main is `congrad train`: LP-DPO LoRA training of the embedded tiny model on
// a kept-pairs Parquet file; the adapters are written as safetensors with
// the HF-style names of LoRA.Names. Progress goes to log.
func Main(ctx context.Context, args []string, log io.Writer) error {
	fs := flag.NewFlagSet("congrad train", flag.ContinueOnError)
	fs.SetOutput(log)
	pairs := fs.String("pairs", "", "kept-pairs Parquet file (columns prompt, chosen, rejected; optional pair_id, lang)")
	out := fs.String("out", "", "output safetensors file for the LoRA adapters")
	baseSeed := fs.Uint64("base-seed", 0, "seed of the tiny base model's weights")
	seed := fs.Uint64("seed", 1, "seed of LoRA init and batch order")
	steps := fs.Int("steps", 0, "optimiser steps (0: --epochs passes)")
	epochs := fs.Int("epochs", 1, "passes over the pairs when --steps is 0")
	batch := fs.Int("batch", 32, "pairs per step")
	lr := fs.Float64("lr", 1e-3, "Adam learning rate")
	beta := fs.Float64("beta", 0.1, "LP-DPO β")
	alpha := fs.Float64("alpha", 0, "LP-DPO length penalty α (0: plain DPO)")
	rank := fs.Int("rank", TinyConfig().LoRARank, "LoRA rank")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pairs == "" || *out == "" {
		return fmt.Errorf("congrad train: --pairs and --out are required")
	}
	ps, err := ReadPairsParquet(ctx, *pairs)
	if err != nil {
		return err
	}
	cfg := TinyConfig()
	cfg.LoRARank = *rank
	base, err := NewBase(cfg, *baseSeed)
	if err != nil {
		return err
	}
	e, err := NewEngine(base, *beta, *alpha)
	if err != nil {
		return err
	}
	ds, err := e.NewDataset(ps)
	if err != nil {
		return err
	}
	for _, r := range ds.Rejected {
		fmt.Fprintf(log, "rejected pair %s: %s\n", r.ID, r.Reason)
	}
	fmt.Fprintf(log, "train: %d pairs read, %d usable, %d rejected\n", len(ps), ds.Len(), len(ds.Rejected))
	opts := Options{LR: *lr, BatchSize: *batch, Steps: *steps, Epochs: *epochs, Seed: *seed,
		Progress: func(step int, loss float64) {
			if step%10 == 0 {
				fmt.Fprintf(log, "step %d loss %.4f\n", step, loss)
			}
		}}
	res, err := e.Train(ctx, ds, opts)
	if err != nil {
		return err
	}
	ts := map[string]*model.Tensor{}
	for i, n := range res.LoRA.Names {
		p := res.LoRA.Params[i]
		ts[n] = &model.Tensor{Dims: p.Dims, Data: p.Data}
	}
	meta := map[string]string{"congrad.lora_alpha": strconv.FormatFloat(cfg.LoRAAlpha, 'g', -1, 64),
		"congrad.lora_rank": strconv.Itoa(cfg.LoRARank), "congrad.base_seed": strconv.FormatUint(*baseSeed, 10),
		"congrad.beta": strconv.FormatFloat(*beta, 'g', -1, 64), "congrad.alpha": strconv.FormatFloat(*alpha, 'g', -1, 64)}
	if err := model.WriteSafetensors(*out, ts, meta); err != nil {
		return fmt.Errorf("congrad train: write %s: %w", *out, err)
	}
	fmt.Fprintf(log, "train: %d steps, final loss %.4f, adapters written to %s\n", len(res.Losses), res.Losses[len(res.Losses)-1], *out)
	return nil
}
