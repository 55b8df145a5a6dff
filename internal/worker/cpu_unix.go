//go:build unix

package worker

import (
	"syscall"
	"time"
)

// processCPU returns the user+system CPU time this process has used: a
// run's CPU time is the difference across it (compile included), measured
// in the worker, which runs one guest at a time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
