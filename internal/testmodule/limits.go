package testmodule

import (
	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// Limits are generous limits for running these modules, which each test
// narrows to what it is about; the engine's and the worker pool's tests
// start from them. The wall time is one a guest that ends by itself never
// comes near, also under -race on a loaded machine (a stack overflow took
// 11 s in-process there); it only bounds a run that would otherwise hang
// the test.
func Limits() wasmwiz.Limits {
	return wasmwiz.Limits{
		Timeout:        testenv.Patience,
		MaxMemoryBytes: 64 * wasmwiz.MiB,
		MaxOutputBytes: wasmwiz.MiB,
		MaxModuleBytes: 10 * wasmwiz.MiB,
		MaxStdinBytes:  wasmwiz.MiB,
	}
}
