package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/congrad-beam/congrad/pipelines"
)

var binOnce struct {
	sync.Once
	dir  string
	path string
	err  error
}

// TestMain removes the binary built for the chaos tests (≈ 260 MB) when the
// test process ends.
func TestMain(m *testing.M) {
	code := m.Run()
	if binOnce.dir != "" {
		os.RemoveAll(binOnce.dir)
	}
	os.Exit(code)
}

// congradBinary builds this command once per test process.
func congradBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "congrad-chaos-bin-")
		if err != nil {
			binOnce.err = err
			return
		}
		binOnce.dir = dir
		binOnce.path = filepath.Join(dir, "congrad")
		out, err := exec.Command("go", "build", "-o", binOnce.path, ".").CombinedOutput()
		if err != nil {
			binOnce.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binOnce.err != nil {
		t.Fatal(binOnce.err)
	}
	return binOnce.path
}

// runBinary runs the binary with args; fault sets CONGRAD_FAULT, a delay > 0
// SIGKILLs it after that long. It returns whether it exited 0 and its stderr.
func runBinary(bin string, args []string, fault string, delay time.Duration) (bool, string) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "CONGRAD_FAULT="+fault)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return false, err.Error()
	}
	if delay > 0 {
		t := time.AfterFunc(delay, func() { cmd.Process.Kill() })
		defer t.Stop()
	}
	err := cmd.Wait()
	return err == nil, stderr.String()
}

// stageOutput is the output a later stage reads from each stage.
var stageOutput = map[string]string{"generate": "pairs", "sketch": "sketches", "select": "kept"}

// TestChaosKilledStagesNeverReadAsComplete kills the staged job (generate,
// sketch, select, each a `congrad` subprocess) at random moments (SIGKILL)
// and at the commit protocol's steps (CONGRAD_FAULT), checks after every
// kill that a later stage either refuses the folder with the manifest error
// or finds it complete and identical to a clean run's, then reruns the
// stage and finally compares every output byte with the clean run.
// CONGRAD_CHAOS_SEED=N replays the kill times of a reported seed.
func TestChaosKilledStagesNeverReadAsComplete(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := congradBinary(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CONGRAD_CHAOS_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("chaos seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	ref, dir := t.TempDir(), t.TempDir()
	stages := []string{"generate", "sketch", "select"}
	took := map[string]time.Duration{}
	for _, st := range stages {
		start := time.Now()
		if ok, log := runBinary(bin, stageArgs(st, ref), "", 0); !ok {
			t.Fatalf("clean %s: %s", st, log)
		}
		took[st] = time.Since(start)
	}
	refFiles := outputs(t, ref)

	// Per stage: random SIGKILLs (between 10% and 110% of the clean
	// duration, so some land after the commit) and commit-protocol faults.
	plan := map[string][]string{
		"generate": {"random", "random", "started", "commit-generate-manifest"},
		"sketch":   {"random", "commit-sketch-files"},
		"select":   {"random", "random", "commit-select-manifest"},
	}
	ctx := context.Background()
	kills := 0
	for _, st := range stages {
		for i, how := range plan[st] {
			fault, delay := "", time.Duration(0)
			if how == "random" {
				delay = time.Duration((0.1 + rng.Float64()) * float64(took[st]))
			} else {
				fault = how
			}
			ok, log := runBinary(bin, stageArgs(st, dir), fault, delay)
			kills++
			t.Logf("%s killed (%s %v): exited ok=%v", st, how, delay.Round(time.Millisecond), ok)
			if fault != "" && ok {
				t.Fatalf("%s with CONGRAD_FAULT=%s finished: the fault point is not reached\n%s", st, fault, log)
			}
			// What a later stage sees: a refusal, or a complete folder.
			_, m, _, _, err := pipelines.ResolveInput(ctx, dir, stageOutput[st], "", "--in", nil)
			switch {
			case err == nil:
				for _, f := range m.Files {
					if !bytes.Equal(refFiles[f.Path], mustRead(t, filepath.Join(dir, f.Path))) {
						t.Fatalf("after killing %s (%s): the manifest vouches for %s, which differs from the clean run", st, how, f.Path)
					}
				}
			case errors.Is(err, pipelines.ErrManifest), errors.Is(err, pipelines.ErrNoInput):
				if i == 0 && st != "select" {
					// The CLI says so too, before running anything.
					next := map[string]string{"generate": "sketch", "sketch": "select"}[st]
					ok, log := runBinary(bin, stageArgs(next, dir), "", 0)
					if ok || !strings.Contains(log, "manifest") && !strings.Contains(log, "no files match") {
						t.Fatalf("congrad %s after killing %s: ok=%v\n%s", next, st, ok, log)
					}
				}
			default:
				t.Fatalf("after killing %s (%s): a later stage gets %v, want a manifest refusal", st, how, err)
			}
		}
		if ok, log := runBinary(bin, stageArgs(st, dir), "", 0); !ok {
			t.Fatalf("rerun of %s after the kills: %s", st, log)
		}
	}
	if kills < 5 {
		t.Fatalf("only %d kills", kills)
	}

	// The reruns end byte-identical to the clean run: every file, nothing
	// left over; the manifests differ only in run ids and times.
	got := outputs(t, dir)
	for name, b := range refFiles {
		if !bytes.Equal(b, got[name]) {
			t.Errorf("%s differs from the clean run (%d vs %d bytes)", name, len(got[name]), len(b))
		}
	}
	for name := range got {
		if _, ok := refFiles[name]; !ok {
			t.Errorf("%s is left over after the reruns", name)
		}
	}
	for _, st := range stages {
		a, b := readManifest(t, ref, st), readManifest(t, dir, st)
		if !reflect.DeepEqual(a.Files, b.Files) || b.State != pipelines.StateCommitted {
			t.Errorf("%s manifest: files %v vs clean %v (state %s)", st, manifestPaths(b), manifestPaths(a), b.State)
		}
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// outputs returns relative name -> bytes of the files under dir, without
// the manifests (run ids, times) and the lock.
func outputs(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if strings.HasPrefix(rel, "_MANIFEST-") && strings.HasSuffix(rel, ".json") || rel == pipelines.LockFile {
			return nil
		}
		out[filepath.ToSlash(rel)], err = os.ReadFile(p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
