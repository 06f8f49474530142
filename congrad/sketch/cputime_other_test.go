//go:build !linux

package sketch

import "time"

// threadCPU falls back to wall time where the thread CPU clock is not wired.
func threadCPU() time.Duration { return time.Duration(time.Now().UnixNano()) }

func lockThread() func() { return func() {} }
