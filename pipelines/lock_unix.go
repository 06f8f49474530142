//go:build unix

package pipelines

import (
	"errors"
	"os"
	"syscall"
)

// tryFlock takes a non-blocking exclusive flock on f. held: another open file
// holds it; ok: flock works on this filesystem.
func tryFlock(f *os.File) (held, ok bool) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	switch {
	case err == nil:
		return false, true
	case errors.Is(err, syscall.EWOULDBLOCK):
		return true, true
	}
	return false, false // ENOTSUP, ENOLCK...: fall back to the pid check
}

// pidAlive reports whether a process with this pid runs on this host.
func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
