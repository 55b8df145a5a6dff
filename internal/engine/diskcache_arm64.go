package engine

import "golang.org/x/sys/cpu"

// cpuFeatures are the CPU features wazero v1.12.0 compiles for and hashes
// into its cache's file names (internal/platform.CpuFeatures on arm64).
func cpuFeatures() uint64 {
	if cpu.ARM64.HasATOMICS {
		return 1
	}
	return 0
}
