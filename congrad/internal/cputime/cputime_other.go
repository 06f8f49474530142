//go:build !linux

package cputime

import "time"

// Thread falls back to wall time where the thread CPU clock is not wired.
func Thread() time.Duration { return time.Duration(time.Now().UnixNano()) }

// Lock is a no-op here.
func Lock() func() { return func() {} }
