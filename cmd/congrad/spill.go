package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// spillPrefix names the directories that hold a run's spilled shard batches
// (lakeio.WriteOptions.SpillDir) while workers run in this process:
// "congrad-spill-<pid>-<random>" under the temporary directory.
const spillPrefix = "congrad-spill-"

// newSpillDir creates this run's spill directory under tmp, after removing
// the ones left by runs whose process is gone (a killed run cannot remove
// its own). The caller removes the directory when the run ends.
func newSpillDir(tmp string) (string, error) {
	removeDeadSpillDirs(tmp)
	dir, err := os.MkdirTemp(tmp, fmt.Sprintf("%s%d-", spillPrefix, os.Getpid()))
	if err != nil {
		return "", fmt.Errorf("spill directory: %w", err)
	}
	return dir, nil
}

// removeDeadSpillDirs removes spill directories under tmp whose process no
// longer exists. One whose owner is alive, cannot be checked (another
// user's process) or whose name does not parse is left alone.
func removeDeadSpillDirs(tmp string) {
	matches, _ := filepath.Glob(filepath.Join(tmp, spillPrefix+"*"))
	for _, m := range matches {
		rest := strings.TrimPrefix(filepath.Base(m), spillPrefix)
		pidStr, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(m)
		}
	}
}
