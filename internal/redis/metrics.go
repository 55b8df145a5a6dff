package redis

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the limiter's own health (docs/METRICS.md), read from its
// counters at every scrape; the server registers them. Its decisions are
// counted where executions are observed (the HTTP layer), once.
func (l *Limiter) Metrics() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wasmwiz_ratelimit_fallback_active",
			Help: "1 while rate limits are decided by the in-memory fallback because Redis is away."}, func() float64 {
			if l.Stats().FallbackActive {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "wasmwiz_ratelimit_fallbacks_total",
			Help: "Times the rate limiter switched from Redis to its in-memory fallback."}, func() float64 { return float64(l.Stats().Outages) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "wasmwiz_ratelimit_store_errors_total",
			Help: "Calls to Redis that failed or timed out."}, func() float64 { return float64(l.Stats().StoreErrors) }),
	}
}
