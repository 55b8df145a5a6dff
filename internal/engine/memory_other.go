//go:build !(linux || darwin || freebsd)

package engine

func newLinearMemory(limit uint64) linearMemory { return &sliceMemory{limit: limit} }
