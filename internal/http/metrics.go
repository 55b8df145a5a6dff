package http

import (
	"bufio"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wasmwiz/wasmwiz"
)

// metrics are the server's Prometheus metrics; docs/METRICS.md lists them.
type metrics struct {
	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	inFlight        prometheus.Gauge

	runs             *prometheus.CounterVec
	runErrors        *prometheus.CounterVec
	runDuration      *prometheus.HistogramVec
	runMemory        *prometheus.HistogramVec
	cacheHits        prometheus.Counter
	cacheMisses      prometheus.Counter
	rateDecisions    *prometheus.CounterVec
	concurrencyLimit *prometheus.CounterVec
}

// knownMethods bounds the method label.
var knownMethods = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true, "OPTIONS": true}

func newMetrics(reg prometheus.Registerer, s *Server) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmwiz_http_requests_total", Help: "HTTP requests by method, route pattern and status.",
		}, []string{"method", "route", "status"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "wasmwiz_http_request_duration_seconds", Help: "HTTP request duration by route pattern.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wasmwiz_http_requests_in_flight", Help: "HTTP requests being served now.",
		}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmwiz_runs_total", Help: "Guest runs by outcome status and tier.",
		}, []string{"status", "tier"}),
		runErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmwiz_run_errors_total", Help: "Execute requests that failed or were refused, by error code and tier.",
		}, []string{"code", "tier"}),
		runDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "wasmwiz_run_duration_seconds", Help: "Guest run wall time by tier.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"tier"}),
		runMemory: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "wasmwiz_run_memory_peak_bytes", Help: "Peak guest linear memory per run, by tier.",
			Buckets: prometheus.ExponentialBuckets(64*1024, 4, 9), // 64KiB … 4GiB
		}, []string{"tier"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wasmwiz_compile_cache_hits_total", Help: "Runs whose compiled code came from a cache (memory or disk).",
		}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wasmwiz_compile_cache_misses_total", Help: "Runs that had to compile their module.",
		}),
		rateDecisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmwiz_ratelimit_decisions_total",
			Help: "Rate-limit decisions: allowed, limited, and fallback (made by the in-memory fallback; also counted as allowed or limited).",
		}, []string{"result"}),
		concurrencyLimit: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmwiz_concurrency_limited_total", Help: "Runs refused because the user had its tier's runs in flight, by tier.",
		}, []string{"tier"}),
	}
	for _, r := range []string{"allowed", "limited", "fallback"} {
		m.rateDecisions.WithLabelValues(r)
	}
	cs := []prometheus.Collector{m.requests, m.requestDuration, m.inFlight, m.runs, m.runErrors, m.runDuration,
		m.runMemory, m.cacheHits, m.cacheMisses, m.rateDecisions, m.concurrencyLimit,
		&statsCollector{s: s}, &hostCollector{procRoot: s.opts.ProcRoot}}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "cannot register metrics")
		}
	}
	// The Go and process collectors may already be on a registry the caller
	// passed (the default one has them): that is fine.
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "cannot register metrics")
			}
		}
	}
	return m, nil
}

func (m *metrics) observeRequest(method, route string, status int, d time.Duration) {
	if !knownMethods[method] {
		method = "OTHER"
	}
	m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
	m.requestDuration.WithLabelValues(route).Observe(d.Seconds())
}

// observeExecution counts what one Execute did.
func (m *metrics) observeExecution(ex *wasmwiz.Execution, err error) {
	if ex == nil {
		return
	}
	tier := "unknown"
	if ex.Tier != nil {
		tier = ex.Tier.Name
	}
	if d := ex.RateLimit; d != nil {
		if d.Allowed {
			m.rateDecisions.WithLabelValues("allowed").Inc()
		} else {
			m.rateDecisions.WithLabelValues("limited").Inc()
		}
		if d.Fallback {
			m.rateDecisions.WithLabelValues("fallback").Inc()
		}
	}
	if err != nil {
		m.runErrors.WithLabelValues(wasmwiz.ErrorCode(err), tier).Inc()
		if wasmwiz.ConcurrencyLimited(err) {
			m.concurrencyLimit.WithLabelValues(tier).Inc()
		}
		return
	}
	res := ex.Result
	if res == nil {
		return
	}
	m.runs.WithLabelValues(string(res.Status), tier).Inc()
	m.runDuration.WithLabelValues(tier).Observe(res.Duration.Seconds())
	m.runMemory.WithLabelValues(tier).Observe(float64(res.MemoryPeakBytes))
	if res.CompileCached {
		m.cacheHits.Inc()
	} else {
		m.cacheMisses.Inc()
	}
}

func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{})
}

// statsCollector reads the stats functions of the engine, the limiter, the
// usage writer and the run gate once per scrape.
type statsCollector struct{ s *Server }

var (
	descCompileSeconds = prometheus.NewDesc("wasmwiz_compile_seconds_total", "Time spent compiling modules.", nil, nil)
	descCompiles       = prometheus.NewDesc("wasmwiz_compiles_total", "Modules compiled.", nil, nil)
	descCacheEntries   = prometheus.NewDesc("wasmwiz_compile_cache_entries", "Compiled modules held in memory.", nil, nil)
	descCacheBytes     = prometheus.NewDesc("wasmwiz_compile_cache_bytes", "Size of the compiled modules held in memory.", nil, nil)
	descFallbackActive = prometheus.NewDesc("wasmwiz_ratelimit_fallback_active", "1 while rate limits are decided by the in-memory fallback.", nil, nil)
	descFallbacks      = prometheus.NewDesc("wasmwiz_ratelimit_fallbacks_total", "Times the rate limiter switched to its in-memory fallback.", nil, nil)
	descLimiterErrors  = prometheus.NewDesc("wasmwiz_ratelimit_store_errors_total", "Shared rate-limit store calls that failed or timed out.", nil, nil)
	descUsageBuffered  = prometheus.NewDesc("wasmwiz_usage_records_buffered", "Usage records waiting to be written.", nil, nil)
	descUsageWritten   = prometheus.NewDesc("wasmwiz_usage_records_written_total", "Usage records written to the database.", nil, nil)
	descUsageDropped   = prometheus.NewDesc("wasmwiz_usage_records_dropped_total", "Usage records dropped because the buffer was full.", nil, nil)
	descRunsInFlight   = prometheus.NewDesc("wasmwiz_runs_in_flight", "Runs holding one of this replica's run slots.", nil, nil)
	descRunSlots       = prometheus.NewDesc("wasmwiz_run_slots", "This replica's run slots (WASMWIZ_MAX_CONCURRENT_RUNS).", nil, nil)
	descRunQueue       = prometheus.NewDesc("wasmwiz_run_queue_length", "Runs waiting for a run slot.", nil, nil)
	descSaturation     = prometheus.NewDesc("wasmwiz_saturation_rejections_total", "Runs refused with 503 because the replica was saturated.", nil, nil)
)

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCompileSeconds, descCompiles, descCacheEntries, descCacheBytes,
		descFallbackActive, descFallbacks, descLimiterErrors, descUsageBuffered, descUsageWritten, descUsageDropped,
		descRunsInFlight, descRunSlots, descRunQueue, descSaturation} {
		ch <- d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	o := c.s.opts
	if o.EngineStats != nil {
		st := o.EngineStats()
		ch <- prometheus.MustNewConstMetric(descCompileSeconds, prometheus.CounterValue, st.CompileSeconds)
		ch <- prometheus.MustNewConstMetric(descCompiles, prometheus.CounterValue, float64(st.Compiles))
		ch <- prometheus.MustNewConstMetric(descCacheEntries, prometheus.GaugeValue, float64(st.CacheEntries))
		ch <- prometheus.MustNewConstMetric(descCacheBytes, prometheus.GaugeValue, float64(st.CacheBytes))
	}
	if o.LimiterStats != nil {
		st := o.LimiterStats()
		active := 0.0
		if st.FallbackActive {
			active = 1
		}
		ch <- prometheus.MustNewConstMetric(descFallbackActive, prometheus.GaugeValue, active)
		ch <- prometheus.MustNewConstMetric(descFallbacks, prometheus.CounterValue, float64(st.Fallbacks))
		ch <- prometheus.MustNewConstMetric(descLimiterErrors, prometheus.CounterValue, float64(st.Errors))
	}
	if o.UsageStats != nil {
		st := o.UsageStats()
		ch <- prometheus.MustNewConstMetric(descUsageBuffered, prometheus.GaugeValue, float64(st.Buffered))
		ch <- prometheus.MustNewConstMetric(descUsageWritten, prometheus.CounterValue, float64(st.Written))
		ch <- prometheus.MustNewConstMetric(descUsageDropped, prometheus.CounterValue, float64(st.Dropped))
	}
	if g := c.s.gate; g != nil {
		ch <- prometheus.MustNewConstMetric(descRunsInFlight, prometheus.GaugeValue, float64(g.InFlight()))
		ch <- prometheus.MustNewConstMetric(descRunSlots, prometheus.GaugeValue, float64(g.Capacity()))
		ch <- prometheus.MustNewConstMetric(descRunQueue, prometheus.GaugeValue, float64(g.Queued()))
		ch <- prometheus.MustNewConstMetric(descSaturation, prometheus.CounterValue, float64(g.Rejected()))
	}
}

// hostCollector reads the host's CPU time and memory from /proc at every
// scrape (Linux; elsewhere it reports nothing).
type hostCollector struct{ procRoot string }

var (
	descHostCPU       = prometheus.NewDesc("wasmwiz_host_cpu_seconds_total", "Host CPU time by mode, from /proc/stat.", []string{"mode"}, nil)
	descHostCPUs      = prometheus.NewDesc("wasmwiz_host_cpus", "Host CPUs online, from /proc/stat.", nil, nil)
	descHostMemTotal  = prometheus.NewDesc("wasmwiz_host_memory_total_bytes", "Host memory, from /proc/meminfo.", nil, nil)
	descHostMemAvail  = prometheus.NewDesc("wasmwiz_host_memory_available_bytes", "Host memory available for new work, from /proc/meminfo.", nil, nil)
	hostCPUModes      = []string{"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"}
	userHZ            = 100.0 // USER_HZ: 100 on every Linux architecture Go supports
	errNoProcCPULine  = errors.New("no cpu line in /proc/stat")
	errNoProcMemTotal = errors.New("no MemTotal in /proc/meminfo")
)

func (c *hostCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descHostCPU
	ch <- descHostCPUs
	ch <- descHostMemTotal
	ch <- descHostMemAvail
}

func (c *hostCollector) root() string {
	if c.procRoot == "" {
		return "/proc"
	}
	return c.procRoot
}

func (c *hostCollector) Collect(ch chan<- prometheus.Metric) {
	if cpu, n, err := readProcStat(filepath.Join(c.root(), "stat")); err == nil {
		for i, mode := range hostCPUModes {
			if i < len(cpu) {
				ch <- prometheus.MustNewConstMetric(descHostCPU, prometheus.CounterValue, cpu[i]/userHZ, mode)
			}
		}
		ch <- prometheus.MustNewConstMetric(descHostCPUs, prometheus.GaugeValue, float64(n))
	}
	if total, avail, err := readMeminfo(filepath.Join(c.root(), "meminfo")); err == nil {
		ch <- prometheus.MustNewConstMetric(descHostMemTotal, prometheus.GaugeValue, total)
		ch <- prometheus.MustNewConstMetric(descHostMemAvail, prometheus.GaugeValue, avail)
	}
}

// readProcStat returns the aggregate cpu line's ticks and the number of cpuN lines.
func readProcStat(path string) ([]float64, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	var ticks []float64
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || !strings.HasPrefix(fields[0], "cpu") {
			continue
		}
		if fields[0] != "cpu" {
			n++
			continue
		}
		for _, f := range fields[1:] {
			v, err := strconv.ParseFloat(f, 64)
			if err != nil {
				return nil, 0, err
			}
			ticks = append(ticks, v)
		}
	}
	if ticks == nil {
		return nil, 0, errNoProcCPULine
	}
	return ticks, n, sc.Err()
}

// readMeminfo returns MemTotal and MemAvailable in bytes.
func readMeminfo(path string) (total, avail float64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, err := strconv.ParseFloat(fields[1], 64)
		if err != nil {
			continue
		}
		if len(fields) > 2 && fields[2] == "kB" {
			v *= 1024
		}
		switch fields[0] {
		case "MemTotal:":
			total = v
		case "MemAvailable:":
			avail = v
		}
	}
	if total == 0 {
		return 0, 0, errNoProcMemTotal
	}
	return total, avail, sc.Err()
}
