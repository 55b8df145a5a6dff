package queue

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmwiz/wasmwiz"
)

// The queue's metrics (docs/METRICS.md): the server registers the Queue, a
// prometheus.Collector. Depth and age are read from the store at every
// scrape (one indexed query over the runs not yet final).
var (
	descRuns = prometheus.NewDesc("wasmwiz_background_runs", "Background runs not yet ended, by state (queued, running).",
		[]string{"state"}, nil)
	descOldest = prometheus.NewDesc("wasmwiz_background_run_oldest_age_seconds",
		"Age of the oldest background run in each state (queued, running); 0 when there is none.", []string{"state"}, nil)
	descWebhooks = prometheus.NewDesc("wasmwiz_webhook_deliveries_total",
		"Webhook delivery attempts by outcome: delivered, failed (tried again later), given_up (the last attempt failed).",
		[]string{"outcome"}, nil)
	descWebhooksRefused = prometheus.NewDesc("wasmwiz_webhook_refused_addresses_total",
		"Webhook attempts refused because the callback's address is not public (and not in WASMWIZ_WEBHOOK_ALLOW).", nil, nil)
	descWebhooksDeferred = prometheus.NewDesc("wasmwiz_webhook_deferred_total",
		"Webhook deliveries put off (no attempt spent) because another delivery of the same user was in flight on this replica.", nil, nil)
)

// scrapeTimeout bounds the store query of a scrape.
const scrapeTimeout = 2 * time.Second

func newStartLatency() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "wasmwiz_background_run_start_latency_seconds",
		Help:    "Time from a background run's admission to a replica taking its job.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	})
}

// Describe implements prometheus.Collector.
func (q *Queue) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRuns
	ch <- descOldest
	ch <- descWebhooks
	ch <- descWebhooksRefused
	ch <- descWebhooksDeferred
	q.startLatency.Describe(ch)
}

// Collect implements prometheus.Collector.
func (q *Queue) Collect(ch chan<- prometheus.Metric) {
	q.startLatency.Collect(ch)
	if w := q.opts.Webhooks; w != nil {
		st := w.Stats()
		ch <- prometheus.MustNewConstMetric(descWebhooks, prometheus.CounterValue, float64(st.Delivered), "delivered")
		ch <- prometheus.MustNewConstMetric(descWebhooks, prometheus.CounterValue, float64(st.Failed), "failed")
		ch <- prometheus.MustNewConstMetric(descWebhooks, prometheus.CounterValue, float64(st.GivenUp), "given_up")
		ch <- prometheus.MustNewConstMetric(descWebhooksRefused, prometheus.CounterValue, float64(st.Refused))
		ch <- prometheus.MustNewConstMetric(descWebhooksDeferred, prometheus.CounterValue, float64(st.Deferred))
	}
	if q.opts.Runs == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	counts, oldest, err := q.opts.Runs.CountRuns(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descRuns, err)
		return
	}
	now := time.Now()
	for _, st := range []wasmwiz.RunState{wasmwiz.RunQueued, wasmwiz.RunRunning} {
		ch <- prometheus.MustNewConstMetric(descRuns, prometheus.GaugeValue, float64(counts[st]), string(st))
		age := 0.0
		if t, ok := oldest[st]; ok {
			age = max(now.Sub(t).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, age, string(st))
	}
}
