//go:build !amd64 && !arm64

package engine

// cpuFeatures are the CPU features wazero hashes into its cache's file
// names: none on other architectures.
func cpuFeatures() uint64 { return 0 }
