# ConGrad: one module, one test command (make test).
GO        ?= go
PKGS      ?= ./...
TESTFLAGS ?= -count=1 -timeout 25m
BIN       := bin

# Go's SIMD experiment (Go >= 1.26): GoMLX's Go backend then uses its AVX2 /
# AVX-512 matmul kernels on amd64 instead of generic Go loops; CPU gradient
# extraction costs about a third as much (docs/perf/gradients-cpu.md). Every
# target below (binaries, vet, tests) is built the same way. Opt out with
# `make GOEXPERIMENT= ...`. Sketch bits differ between the two builds (last
# bits); each build is deterministic on its own.
GOEXPERIMENT ?= simd
export GOEXPERIMENT

.PHONY: all build test bench bench-peers lint demo experiment clean gradbench-xla gpu-check fuzz experiment experiment-quick

all: build

build:
	$(GO) build ./...
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/congrad ./cmd/congrad

# The one test command. Tests that need external tools (DuckDB via npm, the
# prism job server) find them through env vars that .ci/run sets up; see README.
test:
	$(GO) vet $(PKGS)
	$(GO) test $(TESTFLAGS) $(PKGS)

# Benchmarks: figures and how to read them are in docs/PERFORMANCE.md.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 $(PKGS) | tee bench.txt
	$(GO) run ./gpu/cmd/gradbench -model tiny -seq 128 -batch 8 -steps 4 | tee -a bench.txt
	$(GO) run ./gpu/cmd/gradbench -model 10m -seq 128 -batch 2 -steps 3 | tee -a bench.txt

# congrad select vs the same bulk work in DuckDB on the same synthetic sketch
# files: CPU seconds, peak RSS and their ratio (docs/perf/select.md).
# N and K set the size (default 100000 sketches, k=2048); ROUNDS=3 alternates
# the jobs three times and keeps the least CPU of each.
bench-peers:
	scripts/bench-peers.sh

# The GPU build: cgo + XLA through a PJRT plugin loaded at run time (no C
# library needed at build time). Carry bin/gradbench-xla to a GPU machine.
gradbench-xla:
	@mkdir -p $(BIN)
	CGO_ENABLED=1 $(GO) build -tags xla -o $(BIN)/gradbench-xla ./gpu/cmd/gradbench

gpu-check:
	scripts/gpu-check.sh

# Short fuzzing of the maths (Go allows one fuzz target per invocation).
FUZZTIME ?= 10s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzAdd$$' -fuzztime $(FUZZTIME) ./congrad/sketch
	$(GO) test -run '^$$' -fuzz '^FuzzMeanNoPanic$$' -fuzztime $(FUZZTIME) ./congrad/accum
	$(GO) test -run '^$$' -fuzz '^FuzzConsensusNoPanic$$' -fuzztime $(FUZZTIME) ./congrad/pcgrad
	$(GO) test -run '^$$' -fuzz '^FuzzDecideNoPanic$$' -fuzztime $(FUZZTIME) ./congrad/keep
	$(GO) test -run '^$$' -fuzz '^FuzzCosineNoPanic$$' -fuzztime $(FUZZTIME) ./congrad/vec

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Method validation (docs/EXPERIMENTS.md): the full study (task v2, 15 seeds x 15 arms,
# about 3 CPU-hours) rewrites the v2 tables and plots in docs/; quick mode writes
# out/experiment-quick. Resumable chunked runs: experiment/study-v2.sh (see EXPERIMENTS.md).
experiment:
	$(GO) run ./experiment/cmd/experiment

experiment-quick:
	$(GO) run ./experiment/cmd/experiment --quick

clean:
	rm -rf $(BIN) out bench.txt

# One ConGrad round on the self-written fixtures (testdata/prompts, 10
# languages) with in-process Prism, the embedded tiny model for gradients and
# the seeded markov generator for candidates and judging; writes ./out/.
# min_margin is lowered because the demo judge's scores span a small range.
demo:
	$(GO) build -o $(BIN)/congrad ./cmd/congrad
	./$(BIN)/congrad run --out=out --min_margin=0.05 --progress_every=10
