package pipelines

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// deadPID returns the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("no `true` to make a dead pid: %v", err)
	}
	return cmd.Process.Pid
}

func TestLockOneRunPerOut(t *testing.T) {
	ctx := context.Background()
	host, _ := os.Hostname()
	for _, out := range []string{t.TempDir() + "/out", "memfs://locktest/out", fmt.Sprintf("gs://%s/locktest/out", gcsBucket)} {
		t.Run(fsName(out), func(t *testing.T) {
			a, err := AcquireLock(ctx, out, "congrad run --out="+out, "run-a", nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = AcquireLock(ctx, out, "congrad select", "run-b", nil)
			if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) ||
				!strings.Contains(err.Error(), "congrad run --out=") {
				t.Fatalf("second lock on %s: %v, want ErrLocked naming the holder", out, err)
			}
			if err := a.Release(); err != nil {
				t.Fatal(err)
			}
			b, err := AcquireLock(ctx, out, "congrad select", "run-b", nil)
			if err != nil {
				t.Fatalf("lock after release: %v", err)
			}
			b.Release()
		})
	}

	// A lock left by a process that died (SIGKILL: no release) is taken
	// over with a warning; on gs:// only when it names this host and a dead
	// pid, and a live holder elsewhere is never taken over.
	stale, _ := json.Marshal(LockInfo{PID: deadPID(t), Host: host, Command: "congrad run", Started: "2026-01-01T00:00:00Z"})
	local := t.TempDir()
	os.WriteFile(filepath.Join(local, LockFile), stale, 0o644)
	gsOut := fmt.Sprintf("gs://%s/locktest/stale", gcsBucket)
	if err := writeAll(ctx, gsOut+"/"+LockFile, stale); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{local, gsOut} {
		var warn bytes.Buffer
		l, err := AcquireLock(ctx, out, "congrad run", "run-c", &warn)
		if err != nil {
			t.Fatalf("stale lock on %s not taken over: %v", out, err)
		}
		if !strings.Contains(warn.String(), "stale lock") {
			t.Errorf("%s: no take-over warning: %q", out, warn.String())
		}
		l.Release()
	}
	alive, _ := json.Marshal(LockInfo{PID: os.Getpid(), Host: "other-host", Command: "congrad run"})
	if err := writeAll(ctx, gsOut+"/"+LockFile, alive); err != nil {
		t.Fatal(err)
	}
	if _, err := AcquireLock(ctx, gsOut, "congrad run", "run-d", nil); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "other-host") {
		t.Fatalf("gs:// lock of another host: %v, want ErrLocked", err)
	}
	os.WriteFile(filepath.Join(local, LockFile), alive, 0o644)
	if _, err := AcquireLock(ctx, local, "congrad run", "run-d", nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("local lock of another host: %v, want ErrLocked", err)
	}
}

// The manifest checks work the same on local paths, memfs:// and gs://:
// a committed manifest is read through, a changed file and a stale shard
// are refused, and removeStale drops the other format.
func TestManifestOnEveryFilesystem(t *testing.T) {
	ctx := context.Background()
	for _, dir := range []string{t.TempDir(), "memfs://mtest/out", fmt.Sprintf("gs://%s/mtest/out", gcsBucket)} {
		t.Run(fsName(dir), func(t *testing.T) {
			m := &Manifest{Version: manifestVersion, Stage: StageGenerate, State: StateCommitted, RunID: "r1"}
			for i, data := range []string{"one", "two"} {
				rel := fmt.Sprintf("pairs-%05d-of-00002.parquet", i)
				if err := writeAll(ctx, joinPath(dir, rel), []byte(data)); err != nil {
					t.Fatal(err)
				}
				size, sum, _, err := hashFile(ctx, joinPath(dir, rel), false)
				if err != nil {
					t.Fatal(err)
				}
				m.Files = append(m.Files, FileEntry{Path: rel, Output: OutPairs, Size: size, SHA256: sum})
			}
			if err := writeManifest(ctx, dir, m); err != nil {
				t.Fatal(err)
			}
			ref, src, _, glob, err := ResolveInput(ctx, dir, OutPairs, "", "--pairs", nil)
			if err != nil || src.RunID != "r1" || ref.Files != 2 || glob != joinPath(dir, "pairs-*.parquet") {
				t.Fatalf("committed manifest: %v %+v %s", err, ref, glob)
			}
			if _, _, _, _, err := ResolveInput(ctx, dir, OutPairs, joinPath(dir, "pairs-*"), "--pairs", nil); err != nil {
				t.Fatalf("explicit glob over one manifest: %v", err)
			}
			stale := joinPath(dir, "pairs-00000-of-00001.arrow")
			writeAll(ctx, stale, []byte("old"))
			if _, _, _, _, err := ResolveInput(ctx, dir, OutPairs, "", "--pairs", nil); !errors.Is(err, ErrManifest) || !strings.Contains(err.Error(), "not listed") {
				t.Fatalf("stale shard: %v", err)
			}
			if err := removeStale(ctx, dir, []string{OutPairs}, []string{"pairs-00000-of-00002.parquet", "pairs-00001-of-00002.parquet"}); err != nil {
				t.Fatal(err)
			}
			writeAll(ctx, joinPath(dir, "pairs-00001-of-00002.parquet"), []byte("TWO"))
			if _, _, _, _, err := ResolveInput(ctx, dir, OutPairs, "", "--pairs", nil); !errors.Is(err, ErrManifest) || !strings.Contains(err.Error(), "SHA-256") {
				t.Fatalf("changed file (stale one removed?): %v", err)
			}
		})
	}
}

func fsName(p string) string {
	if i := strings.Index(p, "://"); i >= 0 {
		return p[:i]
	}
	return "local"
}
