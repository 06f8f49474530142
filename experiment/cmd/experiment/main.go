// Command experiment runs the ConGrad method-validation study (issue 7) and
// writes docs/EXPERIMENTS.md and its plots. See experiment.Main for flags.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/congrad-beam/congrad/experiment"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := experiment.Main(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "experiment:", err)
		os.Exit(1)
	}
}
