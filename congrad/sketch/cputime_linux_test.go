package sketch

import (
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

// threadCPU returns this OS thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so
// the same-run ratios in the benchmarks are not skewed by other processes
// competing for the (shared, 2-core) CI machine. Callers lock the thread.
func threadCPU() time.Duration {
	var ts syscall.Timespec
	const clockThreadCPUTimeID = 3
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		return time.Duration(time.Now().UnixNano())
	}
	return time.Duration(ts.Nano())
}

func lockThread() func() {
	runtime.LockOSThread()
	return runtime.UnlockOSThread
}
