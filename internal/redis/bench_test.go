package redis_test

import (
	"context"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/inmem"
	"github.com/wasmwiz/wasmwiz/internal/redis"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

var enterprise = []wasmwiz.RateLimit{
	{Name: "minute", Limit: 5000, Window: time.Minute},
	{Name: "day", Limit: 1_000_000, Window: 24 * time.Hour},
}

// BenchmarkAllow measures Allow against the Redis of WASMWIZ_TEST_REDIS_URL
// on Redis's clock: one round trip and one script per call.
func BenchmarkAllow(b *testing.B) {
	url := testenv.RedisURL(b)
	keys := make([]string, 10_000)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i)
	}
	newBenchLimiter := func(b *testing.B) *redis.Limiter {
		c := newClient(b, url)
		return newLimiter(b, redis.Options{Client: c, Prefix: testPrefix(b, c), Timeout: time.Second,
			Fallback: inmem.New(inmem.Options{})})
	}
	check := func(b *testing.B, l *redis.Limiter) {
		if s := l.Stats(); s.Fallback != 0 {
			b.Fatalf("%d calls fell back: the figures are not Redis's", s.Fallback)
		}
	}
	b.Run("serial/many-keys", func(b *testing.B) {
		l := newBenchLimiter(b)
		lat := make([]time.Duration, 0, b.N)
		i := 0
		for b.Loop() {
			start := time.Now()
			if _, err := l.Allow(context.Background(), keys[i%len(keys)], enterprise); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
			i++
		}
		reportLatency(b, lat)
		check(b, l)
	})
	b.Run("parallel/many-keys", func(b *testing.B) {
		l := newBenchLimiter(b)
		var next atomic.Int64
		b.SetParallelism(8) // requests in flight, as under a busy server
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(1)) * 7919
			for pb.Next() {
				if _, err := l.Allow(context.Background(), keys[i%len(keys)], enterprise); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
		check(b, l)
	})
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}
