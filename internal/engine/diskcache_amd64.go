package engine

import "golang.org/x/sys/cpu"

// cpuFeatures are the CPU features wazero v1.12.0 compiles for and hashes
// into its cache's file names (internal/platform.CpuFeatures on amd64).
func cpuFeatures() uint64 {
	var f uint64
	if cpu.X86.HasSSE41 {
		f |= 1 << 0
	}
	if cpu.X86.HasBMI1 {
		f |= 1 << 1
	}
	if cpu.X86.HasBMI1 && cpu.X86.HasBMI2 && cpu.X86.HasPOPCNT {
		f |= 1 << 2
	}
	return f
}
