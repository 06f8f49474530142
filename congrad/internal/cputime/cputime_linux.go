// Package cputime reads the calling OS thread's CPU time, for benchmarks
// that report same-run ratios: on a shared machine wall time mostly measures
// the other processes. Callers pin the goroutine with Lock.
package cputime

import (
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

const clockThreadCPUTimeID = 3 // CLOCK_THREAD_CPUTIME_ID

// Thread returns the current thread's CPU time, or wall time if the clock
// cannot be read.
func Thread() time.Duration {
	var ts syscall.Timespec
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		return time.Duration(time.Now().UnixNano())
	}
	return time.Duration(ts.Nano())
}

// Lock pins the calling goroutine to its thread; call the result to unpin.
func Lock() func() {
	runtime.LockOSThread()
	return runtime.UnlockOSThread
}
