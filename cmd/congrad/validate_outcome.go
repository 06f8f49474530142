package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/congrad-beam/congrad/pipelines"
	"github.com/congrad-beam/congrad/pipelines/progress"
	sr "github.com/congrad-beam/congrad/selfreward"
)

// Stage counters of pipelines.Counter (progress.Tap names).
var (
	genStage = progress.Stage{Name: "generate", Unit: "prompts",
		In:   []string{"generate/prompts_read", "generate/rows_unreadable"},
		Done: []string{"generate/pairs", "generate/prompts_dropped_or_dead", "generate/rows_unreadable"}}
	gradStage = progress.Stage{Name: "gradients", Unit: "pairs",
		In: []string{"gradients/pairs_in"}, Done: []string{"gradients/sketches", "gradients/dead"}}
	selStage = progress.Stage{Name: "select", Unit: "pairs",
		In: []string{"select/pairs_in"}, Done: []string{"select/kept", "select/dropped", "select/dead"}}
)

// progressStages are the stages of cmd, in pipeline order.
func progressStages(cmd string) []progress.Stage {
	switch cmd {
	case "generate":
		return []progress.Stage{genStage}
	case "sketch":
		return []progress.Stage{gradStage}
	case "select":
		return []progress.Stage{selStage}
	}
	g, s := gradStage, selStage
	g.After, s.After = "generate", "gradients"
	return []progress.Stage{genStage, g, s}
}

// backendStats is appended to progress lines when the backend retried.
func backendStats() []string {
	r, f := sr.Retries(), sr.FailedRequests()
	if r == 0 && f == 0 {
		return nil
	}
	return []string{fmt.Sprintf("| backend: retries=%d failed_requests=%d", r, f)}
}

// retryPrinter prints a line for the first retry of a burst and then at
// most one line per interval, with the retries since the last line, so a
// hanging or failing server is visible without flooding the terminal.
func retryPrinter(w io.Writer, every time.Duration) func(sr.RetryEvent) {
	var mu sync.Mutex
	var last time.Time
	var since int
	return func(e sr.RetryEvent) {
		mu.Lock()
		defer mu.Unlock()
		since++
		if !last.IsZero() && time.Since(last) < every {
			return
		}
		fmt.Fprintf(w, "congrad: backend %s: %d retr%s since the last notice; latest: retry %d of %d in %s after: %s\n",
			e.URL, since, map[bool]string{true: "y", false: "ies"}[since == 1], e.Retry, e.MaxRetries,
			e.Wait.Round(10*time.Millisecond), oneLine(e.Err))
		last, since = time.Now(), 0
	}
}

// runCounts returns the stage counters of a finished run: from the runner's
// Beam metrics (namespace congrad.progress) when it returned any, else, for
// a runner whose workers run in this process, from the live counters. ok is
// false when neither is available (a remote runner without metrics).
func runCounts(res beam.PipelineResult, inproc bool) (counts map[string]int64, ok bool) {
	counts = map[string]int64{}
	if res != nil {
		for _, c := range res.Metrics().AllMetrics().Counters() {
			if c.Namespace() == "congrad.progress" {
				counts[c.Name()] += c.Result()
				ok = true
			}
		}
	}
	if ok || !inproc {
		return counts, ok
	}
	for _, kv := range progress.Snapshot() {
		counts[kv[0].(string)] = kv[1].(int64)
	}
	return counts, true
}

// errNothing is a run that finished but produced nothing useful (exit 1).
type errNothing struct{ msg string }

func (e errNothing) Error() string { return e.msg }

// checkProduced fails a run that produced nothing useful, in one line with
// the counts and where the dead letters are: every prompt dead-lettered (an
// unreachable or broken backend), no sketch, no kept or dropped pair.
func checkProduced(cmd string, c pipelines.Config, counts map[string]int64) error {
	n := func(k string) int64 { return counts[k] }
	switch cmd {
	case "generate", "run":
		if n("generate/pairs") == 0 {
			return errNothing{fmt.Sprintf("%s produced no pairs: %d prompts read, %d unreadable rows, %d prompts dropped or dead-lettered (reasons in %s)",
				cmd, n("generate/prompts_read"), n("generate/rows_unreadable"), n("generate/prompts_dropped_or_dead"), c.Glob(pipelines.OutDeadGen))}
		}
	}
	switch cmd {
	case "sketch", "run":
		if n("gradients/sketches") == 0 {
			where := c.Glob(pipelines.OutDeadSketch)
			if cmd == "run" {
				where = c.Glob(pipelines.OutDeadSelect)
			}
			return errNothing{fmt.Sprintf("%s produced no sketches: %d pairs in, %d dead-lettered (reasons in %s)",
				cmd, n("gradients/pairs_in"), n("gradients/dead"), where)}
		}
	}
	switch cmd {
	case "select", "run":
		if n("select/kept")+n("select/dropped") == 0 {
			return errNothing{fmt.Sprintf("%s decided on no pair: %d pairs in, 0 kept, 0 dropped, %d dead-lettered (reasons in %s)",
				cmd, n("select/pairs_in"), n("select/dead"), c.Glob(pipelines.OutDeadSelect))}
		}
	}
	return nil
}
