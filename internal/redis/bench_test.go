package redis_test

import (
	"context"
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

// BenchmarkAdmit measures Admit as the server calls it: many requests in
// flight (8 per core) for ONE caller, each admission followed by its
// release, which the next admission on the replica carries. Limits no run
// reaches, as `wasmwiz bench` sets them, so every call is admitted and
// appends to every log. minute-day is the tier's own quotas over a run too
// short for an event to leave the minute; second-day puts a one-second
// window first, so that events leave it on every call, as the minute's do
// under sustained load. On Redis's clock, as in production; redis-server's
// own cost per script is INFO commandstats' evalsha usec_per_call.
func BenchmarkAdmit(b *testing.B) {
	url := testenv.RedisURL(b)
	for _, bc := range []struct {
		name  string
		first time.Duration
	}{{"minute-day", time.Minute}, {"second-day", time.Second}} {
		b.Run(bc.name, func(b *testing.B) {
			c := newClient(b, url)
			l := newLimiter(b, redis.Options{Client: c, Prefix: testPrefix(b, c), Timeout: time.Second,
				Fallback: inmem.New(inmem.Options{})})
			adm := wasmwiz.Admission{Key: "user:bench", MaxConcurrent: 10_000, SlotTTL: time.Minute,
				Quotas: []wasmwiz.RateLimit{{Name: "first", Limit: 1 << 40, Window: bc.first},
					{Name: "day", Limit: 1 << 40, Window: 24 * time.Hour}}}
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					a, err := l.Admit(context.Background(), adm)
					if err != nil || !a.OK() {
						b.Errorf("Admit: %+v, %v", a, err)
						return
					}
					a.Release(false)
				}
			})
			if s := l.Stats(); s.Fallback != 0 {
				b.Fatalf("%d calls fell back: the figures are not Redis's", s.Fallback)
			}
		})
	}
}
