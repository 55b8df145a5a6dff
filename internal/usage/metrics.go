package usage

import "github.com/prometheus/client_golang/prometheus"

// The writer's metrics (docs/METRICS.md), read from its counters at every
// scrape: the server registers the Writer itself, a prometheus.Collector.
var (
	descBuffered = prometheus.NewDesc("wasmwiz_usage_records_buffered", "Usage records waiting to be written.", nil, nil)
	descWritten  = prometheus.NewDesc("wasmwiz_usage_records_written_total", "Usage records written to the database.", nil, nil)
	descDropped  = prometheus.NewDesc("wasmwiz_usage_records_dropped_total", "Usage records dropped because the buffer was full.", nil, nil)
)

// Describe implements prometheus.Collector.
func (w *Writer) Describe(ch chan<- *prometheus.Desc) {
	ch <- descBuffered
	ch <- descWritten
	ch <- descDropped
}

// Collect implements prometheus.Collector.
func (w *Writer) Collect(ch chan<- prometheus.Metric) {
	st := w.Stats()
	ch <- prometheus.MustNewConstMetric(descBuffered, prometheus.GaugeValue, float64(st.Buffered))
	ch <- prometheus.MustNewConstMetric(descWritten, prometheus.CounterValue, float64(st.Written))
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(st.Dropped))
}
