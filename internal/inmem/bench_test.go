package inmem_test

import (
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/inmem"
	"github.com/wasmwiz/wasmwiz/internal/limitertest"
)

// BenchmarkAllow measures Allow on the real clock (limitertest.Benchmark).
func BenchmarkAllow(b *testing.B) {
	limitertest.Benchmark(b, limitertest.Bench{
		New: func(b *testing.B) wasmwiz.RateLimiter { return inmem.New(inmem.Options{}) },
	})
}
