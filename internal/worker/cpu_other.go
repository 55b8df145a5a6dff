//go:build !unix

package worker

import "time"

// processCPU is not measured here: runs report a CPU time of 0.
func processCPU() time.Duration { return 0 }
