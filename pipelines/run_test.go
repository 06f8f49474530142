package pipelines

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/congrad-beam/congrad/congrad/keep"
	"github.com/congrad-beam/congrad/runners"
	sr "github.com/congrad-beam/congrad/selfreward"
	"github.com/congrad-beam/congrad/serve"
	"github.com/congrad-beam/congrad/serve/markov"
	"github.com/congrad-beam/congrad/transforms/gradients"
	"github.com/congrad-beam/congrad/transforms/selfreward"
)

// runPrompts are self-written prompts close to the markov generator's
// built-in corpus, so candidates overlap the request unevenly and pairs form.
const runPrompts = `{"id":"w1","lang":"en","prompt":"Why does water boil at a lower temperature in the mountains?"}
{"id":"w2","lang":"en","prompt":"How do I make a cup of tea?"}
{"id":"w3","lang":"en","prompt":"What is a prime number?"}
{"id":"w1","lang":"de","prompt":"Warum kocht Wasser in den Bergen früher?"}
{"id":"w2","lang":"de","prompt":"Was macht die Photosynthese?"}
{"id":"w1","lang":"fr","prompt":"Pourquoi l'eau bout-elle plus tôt en montagne ?"}
{"id":"w1","lang":"es","prompt":"¿A qué temperatura hierve el agua?"}
{"id":"w1","lang":"ru","prompt":"При какой температуре кипит вода?"}
{"id":"bad","lang":"en","prompt":"   "}
not json at all
`

func startMarkov(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := serve.Start(ctx, "127.0.0.1:0", markov.OverlapJudge{Engine: markov.New("", 4)}, serve.Options{MaxConcurrent: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); srv.Close() })
	return srv.URL()
}

func runConfig(t testing.TB, url, promptGlob, out string) Config {
	t.Helper()
	return Config{
		Prompts: promptGlob, Out: out, Shards: 2,
		SelfReward: selfreward.Options{
			Core: sr.Options{N: 4, J: 1, MaxTokens: 40, JudgeMaxTokens: 3, ScoreCue: "Score: ", MinMargin: 0.05, Seed: 3},
			Backend: sr.HTTPConfig{BaseURL: url, Model: "markov", API: "completions", Timeout: 20 * time.Second,
				BackoffBase: time.Millisecond, BackoffMax: 10 * time.Millisecond},
		},
		Gradients: gradients.Options{Model: "tiny", Spec: testSpec(), Batch: 3, LoRARank: 2, MaxLen: 256},
		Select:    SelectOptions{Spec: testSpec(), Seed: 11, Keep: keep.Options{Rule: keep.Top, Rho: 0.5}},
	}
}

func writePrompts(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "prompts.jsonl"), []byte(runPrompts), 0o644); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "*.jsonl")
}

func buildRun(t testing.TB, c Config) *beam.Pipeline {
	t.Helper()
	p, s := beam.NewPipelineWithRoot()
	if err := BuildRun(s, c); err != nil {
		t.Fatalf("build run: %v", err)
	}
	return p
}

func sameFiles(t *testing.T, what string, a, b map[string][]byte) {
	t.Helper()
	if len(a) != len(b) || len(a) < 12 {
		t.Fatalf("%s: %d vs %d files", what, len(a), len(b))
	}
	for name, data := range a {
		if !bytes.Equal(data, b[name]) {
			t.Errorf("%s: %s differs", what, name)
		}
	}
}

// TestRunEndToEnd runs the whole round (generate over real HTTP, gradients
// with the embedded tiny model, select) twice in-process and once through a
// separate prism job server, and checks accounting and byte-identical output.
func TestRunEndToEnd(t *testing.T) {
	url := startMarkov(t)
	prompts := writePrompts(t)
	a, b := t.TempDir(), t.TempDir()
	for _, dir := range []string{a, b} {
		if err := ptest.Run(buildRun(t, runConfig(t, url, prompts, dir))); err != nil {
			t.Fatalf("run into %s: %v", dir, err)
		}
	}
	r := readReport(t, a)
	gen, grad, sel := r.Totals["generate"], r.Totals["gradients"], r.Totals["select"]
	t.Logf("totals: %v", r.Totals)
	// 10 rows: the blank prompt and the unparsable line are dead letters of
	// the reader, the 8 others reach generation; every one is accounted for.
	if gen["prompts_read"]+gen["rows_unreadable"] != 10 {
		t.Fatalf("generate read %d good + %d bad rows, want 10", gen["prompts_read"], gen["rows_unreadable"])
	}
	if gen["pairs"]+gen["prompts_dropped_or_dead"] != gen["prompts_read"] {
		t.Fatalf("generate: pairs %d + dropped %d != prompts %d", gen["pairs"], gen["prompts_dropped_or_dead"], gen["prompts_read"])
	}
	if gen["pairs"] < 3 {
		t.Fatalf("only %d pairs: the run is degenerate", gen["pairs"])
	}
	if grad["pairs_in"] != gen["pairs"] || grad["sketches"]+grad["dead"] != grad["pairs_in"] {
		t.Fatalf("gradients: %v vs %d pairs", grad, gen["pairs"])
	}
	if sel["pairs_in"] != gen["pairs"] || sel["kept"]+sel["dropped"]+sel["dead"] != sel["pairs_in"] {
		t.Fatalf("select: %v vs %d pairs", sel, gen["pairs"])
	}
	if sel["kept"] == 0 || sel["dropped"] == 0 {
		t.Fatalf("select kept %d dropped %d: want both", sel["kept"], sel["dropped"])
	}
	sameFiles(t, "two in-process runs", outputs(t, a), outputs(t, b))

	if testing.Short() {
		return
	}
	// The same job through a separate prism job server process
	// (--runner=universal --environment_type=LOOPBACK, Flink's path).
	ep := startJobServer(t)
	c := t.TempDir()
	o := runners.Options{Runner: runners.Universal, Endpoint: ep, EnvironmentType: "LOOPBACK"}
	if _, err := runners.Run(context.Background(), o, buildRun(t, runConfig(t, url, prompts, c))); err != nil {
		t.Fatalf("run through job server %s: %v", ep, err)
	}
	// Back to in-process prism for any later test in this process.
	if err := runners.Apply(&runners.Options{}); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, "job server vs in-process", outputs(t, a), outputs(t, c))
}

// startJobServer builds Beam's prism command ($CONGRAD_PRISM_BIN if CI
// built it) and starts it as a separate process on a free loopback port.
func startJobServer(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("CONGRAD_PRISM_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "prism")
		if out, err := exec.Command("go", "build", "-o", bin, "github.com/apache/beam/sdks/v2/go/cmd/prism").CombinedOutput(); err != nil {
			t.Fatalf("build prism: %v\n%s", err, out)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, fmt.Sprintf("--job_port=%d", port), "--serve_http=false", "--log_level=warn")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(30 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("prism did not start on %s:\n%s", addr, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
