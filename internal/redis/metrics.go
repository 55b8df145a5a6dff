package redis

import "github.com/prometheus/client_golang/prometheus"

// The limiter's own health (docs/METRICS.md), read from its counters at
// every scrape: the server registers the Limiter, a prometheus.Collector.
// Its decisions are counted where executions are observed (the HTTP layer),
// once.
var (
	descFallbackActive = prometheus.NewDesc("wasmwiz_ratelimit_fallback_active", "1 while rate limits are decided by the in-memory fallback because Redis is away.", nil, nil)
	descOutages        = prometheus.NewDesc("wasmwiz_ratelimit_fallbacks_total", "Times the rate limiter switched from Redis to its in-memory fallback.", nil, nil)
	descStoreErrors    = prometheus.NewDesc("wasmwiz_ratelimit_store_errors_total", "Calls to Redis that failed or timed out.", nil, nil)
)

// Describe implements prometheus.Collector.
func (l *Limiter) Describe(ch chan<- *prometheus.Desc) {
	ch <- descFallbackActive
	ch <- descOutages
	ch <- descStoreErrors
}

// Collect implements prometheus.Collector.
func (l *Limiter) Collect(ch chan<- prometheus.Metric) {
	st := l.Stats()
	active := 0.0
	if st.FallbackActive {
		active = 1
	}
	ch <- prometheus.MustNewConstMetric(descFallbackActive, prometheus.GaugeValue, active)
	ch <- prometheus.MustNewConstMetric(descOutages, prometheus.CounterValue, float64(st.Outages))
	ch <- prometheus.MustNewConstMetric(descStoreErrors, prometheus.CounterValue, float64(st.StoreErrors))
}
