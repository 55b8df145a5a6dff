package redis_test

import (
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/inmem"
	"github.com/wasmwiz/wasmwiz/internal/limitertest"
	"github.com/wasmwiz/wasmwiz/internal/redis"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// BenchmarkAllow measures Allow against the Redis of WASMWIZ_TEST_REDIS_URL
// on Redis's clock: one round trip and one script per call
// (limitertest.Benchmark), with 8 requests in flight per core, as under a
// busy server.
func BenchmarkAllow(b *testing.B) {
	url := testenv.RedisURL(b)
	limitertest.Benchmark(b, limitertest.Bench{
		New: func(b *testing.B) wasmwiz.RateLimiter {
			c := newClient(b, url)
			return newLimiter(b, redis.Options{Client: c, Prefix: testPrefix(b, c), Timeout: time.Second,
				Fallback: inmem.New(inmem.Options{})})
		},
		Parallelism: 8,
		After: func(b *testing.B, l wasmwiz.RateLimiter) {
			if s := l.(*redis.Limiter).Stats(); s.Fallback != 0 {
				b.Fatalf("%d calls fell back: the figures are not Redis's", s.Fallback)
			}
		},
	})
}
