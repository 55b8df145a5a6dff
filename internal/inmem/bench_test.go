package inmem_test

import (
	"context"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/inmem"
)

// enterprise is the tier with the largest logs: 5000 a minute, 1M a day.
var enterprise = []wasmwiz.RateLimit{
	{Name: "minute", Limit: 5000, Window: time.Minute},
	{Name: "day", Limit: 1_000_000, Window: 24 * time.Hour},
}

// BenchmarkAllow measures Allow on the real clock: over many keys (mostly
// allowed), and on one full key (every call refused).
func BenchmarkAllow(b *testing.B) {
	keys := make([]string, 10_000)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i)
	}
	b.Run("serial/many-keys", func(b *testing.B) {
		l := inmem.New(inmem.Options{})
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
	})
	b.Run("parallel/many-keys", func(b *testing.B) {
		l := inmem.New(inmem.Options{})
		var next atomic.Int64
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
	})
	b.Run("parallel/one-full-key", func(b *testing.B) {
		l := inmem.New(inmem.Options{})
		free := []wasmwiz.RateLimit{{Name: "minute", Limit: 10, Window: time.Minute}, {Name: "day", Limit: 500, Window: 24 * time.Hour}}
		for range 10 {
			l.Allow(context.Background(), "hot", free)
		}
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if d, err := l.Allow(context.Background(), "hot", free); err != nil || d.Allowed {
					b.Errorf("%+v, %v", d, err)
					return
				}
			}
		})
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
