package sqlite_test

import (
	"time"

	"github.com/prometheus/procfs"
)

// processCPU returns the user+system CPU time this process has used, so
// that a benchmark reports what a record costs in CPU whatever ran it (the
// writer's goroutine, the garbage collector, SQLite's I/O calls). It reads
// /proc through procfs, as the host collector does, in clock ticks (10 ms
// here: a benchmark of a second is exact to about 1 %); where /proc cannot
// be read it is 0 and the benchmarks leave out their CPU metric.
func processCPU() time.Duration {
	p, err := procfs.Self()
	if err != nil {
		return 0
	}
	st, err := p.Stat()
	if err != nil {
		return 0
	}
	return time.Duration(st.CPUTime() * float64(time.Second))
}
