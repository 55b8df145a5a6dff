//go:build unix

package sqlite_test

import (
	"syscall"
	"time"
)

// processCPU returns the user+system CPU time this process has used, so
// that a benchmark reports what a record costs in CPU whatever ran it (the
// writer's goroutine, the garbage collector, SQLite's I/O calls).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
