package worker

import "github.com/prometheus/client_golang/prometheus"

// The pool's metrics (docs/METRICS.md), read from its counters and the
// compiled-code cache figures the workers report, at every scrape. The
// server registers the Pool itself: it is a prometheus.Collector.
var (
	descWorkers        = prometheus.NewDesc("wasmwiz_workers", "Worker processes by state (busy, idle, starting).", []string{"state"}, nil)
	descWorkerKills    = prometheus.NewDesc("wasmwiz_worker_kills_total", "Workers killed: runs past their deadline, cancelled requests, broken protocol, memory.", nil, nil)
	descWorkerTimeouts = prometheus.NewDesc("wasmwiz_worker_timeouts_total", "Runs ended by killing their worker at the deadline.", nil, nil)
	descWorkerCrashes  = prometheus.NewDesc("wasmwiz_worker_crashes_total", "Workers that died on their own.", nil, nil)
	descWorkerRetires  = prometheus.NewDesc("wasmwiz_worker_retires_total", "Workers replaced at their own request, their memory mappings past their allowance.", nil, nil)
	descWorkerRestarts = prometheus.NewDesc("wasmwiz_worker_restarts_total", "Workers started to replace one that ended.", nil, nil)
	descWorkerFails    = prometheus.NewDesc("wasmwiz_worker_start_failures_total", "Worker starts that failed.", nil, nil)
	descWorkerModules  = prometheus.NewDesc("wasmwiz_worker_module_routing_total", "Runs sent to a worker that already held their module (hit) or with the module's bytes (sent).", []string{"result"}, nil)
	descCompileSeconds = prometheus.NewDesc("wasmwiz_compile_seconds_total", "Time the workers spent compiling modules.", nil, nil)
	descCacheEvictions = prometheus.NewDesc("wasmwiz_compile_cache_evictions_total", "Files the workers deleted from the on-disk compile cache to keep its bound.", nil, nil)
	descCompiles       = prometheus.NewDesc("wasmwiz_compiles_total", "Modules the workers compiled (or loaded from the on-disk cache).", nil, nil)
	descCacheEntries   = prometheus.NewDesc("wasmwiz_compile_cache_entries", "Compiled modules the live workers hold in memory.", nil, nil)
	descCacheBytes     = prometheus.NewDesc("wasmwiz_compile_cache_bytes", "Estimated size of the compiled modules the live workers hold.", nil, nil)
	descCompileWaiting = prometheus.NewDesc("wasmwiz_compile_waiting", "Requests waiting for a compile slot.", nil, nil)
)

var poolDescs = []*prometheus.Desc{descWorkers, descWorkerKills, descWorkerTimeouts, descWorkerCrashes, descWorkerRetires,
	descWorkerRestarts, descWorkerFails, descWorkerModules, descCompileSeconds, descCacheEvictions, descCompiles, descCacheEntries, descCacheBytes, descCompileWaiting}

// Describe implements prometheus.Collector.
func (pl *Pool) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range poolDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (pl *Pool) Collect(ch chan<- prometheus.Metric) {
	st, cs := pl.Stats(), pl.CacheStats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(descWorkers, float64(st.Busy), "busy")
	gauge(descWorkers, float64(st.Idle), "idle")
	gauge(descWorkers, float64(st.Starting), "starting")
	counter(descWorkerKills, float64(st.Kills))
	counter(descWorkerTimeouts, float64(st.Timeouts))
	counter(descWorkerCrashes, float64(st.Crashes))
	counter(descWorkerRetires, float64(st.Retires))
	counter(descWorkerRestarts, float64(st.Restarts))
	counter(descWorkerFails, float64(st.StartFails))
	counter(descWorkerModules, float64(st.ModuleHits), "hit")
	counter(descWorkerModules, float64(st.ModuleSends), "sent")
	counter(descCompileSeconds, cs.CompileSeconds)
	counter(descCacheEvictions, float64(cs.DiskEvictions))
	counter(descCompiles, float64(cs.Misses))
	gauge(descCacheEntries, float64(cs.Entries))
	gauge(descCacheBytes, float64(cs.Bytes))
	gauge(descCompileWaiting, float64(st.CompileWaiting))
}
