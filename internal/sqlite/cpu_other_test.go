//go:build !unix

package sqlite_test

import "time"

// processCPU is not measured here: the benchmarks leave out their CPU
// metric.
func processCPU() time.Duration { return 0 }
