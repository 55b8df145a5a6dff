package limitertest

import (
	"context"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// enterprise is the tier with the largest logs: 5000 a minute, 1M a day.
var enterprise = []wasmwiz.RateLimit{perMinute(5000), perDay(1_000_000)}

// Bench is what Benchmark measures one kind of limiter with.
type Bench struct {
	// New makes a limiter on the real clock for one benchmark.
	New func(b *testing.B) wasmwiz.RateLimiter
	// Parallelism is the goroutines per GOMAXPROCS of the parallel
	// benchmarks (b.SetParallelism): requests in flight; 0 is 1.
	Parallelism int
	// After, when set, checks a limiter after its benchmark (the Redis
	// limiter's: no call fell back, so the figures are Redis's).
	After func(b *testing.B, l wasmwiz.RateLimiter)
}

// Benchmark measures Allow: serially over many keys (mostly allowed, with
// the median and 99th percentile latency), in parallel over many keys, and
// in parallel on one full key (every call refused).
func Benchmark(b *testing.B, bench Bench) {
	keys := make([]string, 10_000)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i)
	}
	after := func(b *testing.B, l wasmwiz.RateLimiter) {
		if bench.After != nil {
			bench.After(b, l)
		}
	}
	b.Run("serial/many-keys", func(b *testing.B) {
		l := bench.New(b)
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
		after(b, l)
	})
	b.Run("parallel/many-keys", func(b *testing.B) {
		l := bench.New(b)
		var next atomic.Int64
		b.SetParallelism(max(bench.Parallelism, 1))
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
		after(b, l)
	})
	b.Run("parallel/one-full-key", func(b *testing.B) {
		l := bench.New(b)
		free := []wasmwiz.RateLimit{perMinute(10), perDay(500)}
		for range 10 {
			if _, err := l.Allow(context.Background(), "hot", free); err != nil {
				b.Fatal(err)
			}
		}
		b.SetParallelism(max(bench.Parallelism, 1))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if d, err := l.Allow(context.Background(), "hot", free); err != nil || d.Allowed {
					b.Errorf("%+v, %v", d, err)
					return
				}
			}
		})
		after(b, l)
	})
}

// reportLatency adds the median and 99th percentile of lat to b's output.
func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}
