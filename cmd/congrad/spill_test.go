package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A spill directory left by a killed run is removed by the next run; one
// whose process is alive (this one) and unrelated names are kept.
func TestSpillDirsOfDeadRunsRemoved(t *testing.T) {
	tmp := t.TempDir()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := filepath.Join(tmp, fmt.Sprintf("%s%d-123", spillPrefix, cmd.Process.Pid))
	live := filepath.Join(tmp, fmt.Sprintf("%s%d-456", spillPrefix, os.Getpid()))
	odd := filepath.Join(tmp, spillPrefix+"notapid")
	for _, d := range []string{dead, live, odd} {
		if err := os.MkdirAll(filepath.Join(d, "write-x"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := newSpillDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(dir), fmt.Sprintf("%s%d-", spillPrefix, os.Getpid())) {
		t.Errorf("spill dir %s does not carry this pid", dir)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("dead run's spill dir kept (%v)", err)
	}
	for _, d := range []string{live, odd, dir} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s removed: %v", d, err)
		}
	}
}
