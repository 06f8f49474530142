// Command congrad runs ConGrad, conflicting-gradient filtering for
// multilingual preference data, as Apache Beam pipelines.
//
//	congrad run                      # whole round: prompts -> pairs -> sketches -> kept pairs + report
//	congrad generate --prompts=...   # prompts -> pairs (self-rewarding)
//	congrad sketch   --pairs=...     # pairs -> sketches (LP-DPO gradients, sketched)
//	congrad select   --pairs=... --sketches=...   # -> kept / dropped / decisions / report
//	congrad serve                    # OpenAI-compatible server for the embedded model
//	congrad train                    # LP-DPO LoRA training of the tiny model on kept pairs
//
// The same binary is also the Beam worker: started by a runner with
// --worker, it serves the SDK harness instead (beam.Init).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/congrad-beam/congrad/pipelines"
	"github.com/congrad-beam/congrad/train"
)

const usage = `congrad: conflicting-gradient filtering of multilingual preference data (Apache Beam).

Usage: congrad <command> [--flag=value ...]

Commands:
  run        one whole ConGrad round: generate, sketch and select in one pipeline
  generate   prompts -> preference pairs (self-rewarding generation and judging)
  sketch     pairs -> per-pair LP-DPO gradient sketches
  select     pairs + sketches -> kept / dropped pairs, decisions, dead letters, report
  serve      OpenAI-compatible HTTP server for the embedded model
  train      LP-DPO LoRA training of the tiny model on kept pairs

'congrad <command> --help' lists the command's flags with their defaults.
With no flags, 'congrad run' uses in-process Prism, the embedded tiny model and
testdata/prompts, and writes everything to ./out/.

Exit status: 0 success; 2 usage error (a bad or misplaced flag, a missing
input, an unusable --model or --out; checked before anything starts); 1
failure (the backend fails its test request, a runner error, or a run that
produced nothing: no pairs, no sketches, no kept or dropped pair).
`

func main() {
	// A runner that starts this binary as a worker passes --worker; Beam then
	// takes over in beam.Init and never returns here.
	if isWorker(os.Args[1:]) {
		flag.Parse()
		beam.Init()
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	finish := startCPUProfile(os.Getenv("CONGRAD_CPUPROFILE"), os.Stderr)
	finishMem := startPeakHeapProfile(os.Getenv("CONGRAD_MEMPROFILE"), os.Stderr)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	finishMem()
	finish()
	os.Exit(code)
}

// startPeakHeapProfile keeps a pprof heap profile near the process's peak
// live heap in path when path is set (CONGRAD_MEMPROFILE=heap.out): twice a
// second it reads the live heap and, when that is 10% above the last
// profile's, rewrites the profile (go tool pprof -sample_index=inuse_space).
func startPeakHeapProfile(path string, stderr io.Writer) func() {
	if path == "" {
		return func() {}
	}
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var last uint64
	write := func() {
		metrics.Read(sample)
		live := sample[0].Value.Uint64()
		if live < last+last/10 {
			return
		}
		last = live
		f, err := os.Create(path)
		if err == nil {
			err = pprof.Lookup("heap").WriteTo(f, 0)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintln(stderr, "congrad: CONGRAD_MEMPROFILE:", err)
			last = math.MaxUint64
		}
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick(500*time.Millisecond, done, write)
	}()
	return func() {
		close(done)
		<-stopped
		write()
	}
}

// tick calls fn every d until done is closed.
func tick(d time.Duration, done <-chan struct{}, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			fn()
		}
	}
}

// startCPUProfile writes a pprof CPU profile of the whole process (the
// pipeline runs in-process on Prism, so this covers every stage) to path
// when path is set: CONGRAD_CPUPROFILE=cpu.out congrad select …, then
// go tool pprof bin/congrad cpu.out. A profile that cannot be started is
// reported and the run goes on without it.
func startCPUProfile(path string, stderr io.Writer) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintln(stderr, "congrad: CONGRAD_CPUPROFILE:", err)
		if f != nil {
			f.Close()
		}
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintln(stderr, "congrad: CONGRAD_CPUPROFILE:", err)
		}
	}
}

// run is main without the exit: it runs Main and prints an error as one
// line, "congrad: <what went wrong>", and returns the exit code: 0 for
// success and --help, 2 for a usage error (bad flag, missing input, bad
// model or output path), 1 for a failure (unreachable backend, a run that
// produced nothing, a runner error).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := Main(ctx, args, stdout, stderr)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "congrad:", strings.TrimRight(err.Error(), "\n"))
	return exitCode(err)
}

func isWorker(args []string) bool {
	for _, a := range args {
		if a == "--worker" || a == "-worker" || strings.HasPrefix(a, "--worker=") {
			return true
		}
	}
	return false
}

// errUsage marks command-line mistakes (exit code 2).
var errUsage = errors.New("usage")

func exitCode(err error) int {
	if errors.Is(err, errUsage) || errors.Is(err, train.ErrUsage) {
		return 2
	}
	return 1
}

// Main dispatches a command; tests call it directly.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command (see 'congrad help')", errUsage)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run", "generate", "sketch", "select":
		return runPipeline(ctx, cmd, rest, stdout, stderr)
	case "serve":
		return serveCmd(ctx, rest, stdout, stderr)
	case "train":
		return train.MainChecked(ctx, rest, stdout, stderr, func(ctx context.Context, glob string) error {
			// Kept pairs of an unfinished, failed or mixed select are
			// refused, as the pipeline stages refuse their inputs.
			_, _, _, _, err := pipelines.ResolveInput(ctx, "", pipelines.OutKept, glob, "--pairs", stderr)
			return err
		})
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		return fmt.Errorf("%w: unknown command %q (commands: run, generate, sketch, select, serve, train; see 'congrad help')", errUsage, cmd)
	}
}
