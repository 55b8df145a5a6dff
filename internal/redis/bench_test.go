package redis_test

import (
	"context"
	"strconv"
	"sync/atomic"
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
// flight (8 per core), each admission followed by its release, which the
// next admission on the replica carries. Limits no run reaches, as
// `wasmwiz bench` sets them, so every call is admitted and appends to every
// log. minute-day is ONE caller with the tier's own quotas, over a run too
// short for an event to leave the minute; second-day puts a one-second
// window first, so that events leave it as the minute's do under sustained
// load; many-callers spreads the admissions over 10 000 callers, each with
// a run or none in flight. On Redis's clock, as in production; redis-server's
// own cost per script is INFO commandstats' evalsha usec_per_call.
func BenchmarkAdmit(b *testing.B) {
	url := testenv.RedisURL(b)
	for _, bc := range []struct {
		name    string
		first   time.Duration
		callers int
	}{{"minute-day", time.Minute, 1}, {"second-day", time.Second, 1}, {"many-callers", time.Minute, 10_000}} {
		b.Run(bc.name, func(b *testing.B) {
			c := newClient(b, url)
			l := newLimiter(b, redis.Options{Client: c, Prefix: testPrefix(b, c), Timeout: time.Second,
				Fallback: inmem.New(inmem.Options{})})
			adm := wasmwiz.Admission{MaxConcurrent: 10_000, SlotTTL: time.Minute,
				Quotas: []wasmwiz.RateLimit{{Name: "first", Limit: 1 << 40, Window: bc.first},
					{Name: "day", Limit: 1 << 40, Window: 24 * time.Hour}}}
			var next atomic.Int64
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				a := adm
				for pb.Next() {
					a.Key = "user:" + strconv.Itoa(int(next.Add(1))%bc.callers)
					got, err := l.Admit(context.Background(), a)
					if err != nil || !got.OK() {
						b.Errorf("Admit: %+v, %v", got, err)
						return
					}
					got.Release(false)
				}
			})
			if s := l.Stats(); s.Fallback != 0 {
				b.Fatalf("%d calls fell back: the figures are not Redis's", s.Fallback)
			}
		})
	}
}
