// Command congrad runs ConGrad, conflicting-gradient filtering for
// multilingual preference data, as Apache Beam pipelines.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "congrad: no subcommands yet")
	os.Exit(2)
}
