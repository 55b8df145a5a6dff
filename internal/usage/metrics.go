package usage

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the writer's metrics (docs/METRICS.md), read from its
// counters at every scrape; the server registers them.
func (w *Writer) Metrics() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wasmwiz_usage_records_buffered",
			Help: "Usage records waiting to be written."}, func() float64 { return float64(w.Stats().Buffered) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "wasmwiz_usage_records_written_total",
			Help: "Usage records written to the database."}, func() float64 { return float64(w.Stats().Written) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "wasmwiz_usage_records_dropped_total",
			Help: "Usage records dropped because the buffer was full."}, func() float64 { return float64(w.Stats().Dropped) }),
	}
}
