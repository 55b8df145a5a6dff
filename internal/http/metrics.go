package http

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/procfs"

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
		&hostCollector{procRoot: s.opts.ProcRoot}}
	if s.gate != nil {
		cs = append(cs, gateMetrics(s.gate)...)
	}
	if s.bodies != nil {
		cs = append(cs, bodyGateMetrics(s.bodies)...)
	}
	if s.dir != nil {
		cs = append(cs, directoryMetrics(s.dir)...)
	}
	if s.userReqs != nil {
		cs = append(cs, s.userReqs.limited)
	}
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
	h := promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{})
	token := s.opts.MetricsToken
	if token == "" {
		return h
	}
	want := sha256.Sum256([]byte("Bearer " + token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Digests of equal length: the comparison takes the same time
		// whatever the caller sent.
		got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			writeJSON(w, http.StatusUnauthorized, errorBody{Error: errorJSON{Code: wasmwiz.EUNAUTHORIZED, Message: "/metrics wants the metrics token"}})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// gateMetrics read the replica's RunGate, which this server owns, at every
// scrape. The worker pool, the rate limiter and the usage writer register
// collectors of their own (serve wires them into one registry).
func gateMetrics(g *wasmwiz.RunGate) []prometheus.Collector {
	return []prometheus.Collector{
		gaugeFunc("wasmwiz_runs_in_flight", "Runs holding one of this replica's run slots.", g.InFlight),
		gaugeFunc("wasmwiz_run_slots", "This replica's run slots (WASMWIZ_MAX_CONCURRENT_RUNS).", g.Capacity),
		gaugeFunc("wasmwiz_run_queue_length", "Runs waiting for a run slot.", g.Queued),
		counterFunc("wasmwiz_saturation_rejections_total", "Runs refused with 503 because the replica was saturated.", g.Rejected),
	}
}

// bodyGateMetrics read the server's bound on large bodies in flight
// (wasmwiz.BodyGate, WASMWIZ_MAX_BODY_MEMORY) at every scrape.
func bodyGateMetrics(g *wasmwiz.BodyGate) []prometheus.Collector {
	return []prometheus.Collector{
		gaugeFunc("wasmwiz_body_memory_bytes", "Bytes of large request bodies held now (each at its declared length, else its route's cap).", g.InUse),
		gaugeFunc("wasmwiz_body_memory_limit_bytes", "The bound on large request bodies held at once (WASMWIZ_MAX_BODY_MEMORY).", g.Capacity),
		gaugeFunc("wasmwiz_body_memory_waiting", "Requests waiting for room to read their large body.", g.Waiting),
		counterFunc("wasmwiz_body_memory_rejections_total", "Requests refused with 503, unread, because large bodies filled the bound.", g.Rejected),
	}
}

// gaugeFunc is a gauge that reads v at every scrape.
func gaugeFunc[T int | int64 | uint64](name, help string, v func() T) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(v()) })
}

// counterFunc is a counter that reads v at every scrape.
func counterFunc[T int | int64 | uint64](name, help string, v func() T) prometheus.CounterFunc {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v()) })
}

// directoryMetrics read the execute path's cache (wasmwiz.Directory), which
// this server owns, at every scrape.
func directoryMetrics(d *wasmwiz.Directory) []prometheus.Collector {
	lookups := func(result string, v func(st wasmwiz.DirectoryStats) uint64) prometheus.CounterFunc {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "wasmwiz_cache_lookups_total",
			Help:        "Lookups of API keys, tiers and stored modules on the execute path: answered from this replica's cache (hit) or read from the database (miss).",
			ConstLabels: prometheus.Labels{"result": result}}, func() float64 { return float64(v(d.Stats())) })
	}
	return []prometheus.Collector{
		lookups("hit", func(st wasmwiz.DirectoryStats) uint64 { return st.Hits }),
		lookups("miss", func(st wasmwiz.DirectoryStats) uint64 { return st.Misses }),
		counterFunc("wasmwiz_cache_stale_total",
			"Execute requests whose cached caller or module the cache epoch showed stale (or a refusal needed confirming): read again from the database.",
			func() uint64 { return d.Stats().Stale }),
	}
}

// hostCollector reads the host's CPU time and memory at every scrape through
// prometheus/procfs (Linux; elsewhere, or when /proc cannot be read, it
// reports nothing). They put a replica's saturation beside the host's.
type hostCollector struct{ procRoot string }

var (
	descHostCPU      = prometheus.NewDesc("wasmwiz_host_cpu_seconds_total", "Host CPU time by mode, from /proc/stat.", []string{"mode"}, nil)
	descHostCPUs     = prometheus.NewDesc("wasmwiz_host_cpus", "Host CPUs online, from /proc/stat.", nil, nil)
	descHostMemTotal = prometheus.NewDesc("wasmwiz_host_memory_total_bytes", "Host memory, from /proc/meminfo.", nil, nil)
	descHostMemAvail = prometheus.NewDesc("wasmwiz_host_memory_available_bytes", "Host memory available for new work, from /proc/meminfo.", nil, nil)
)

func (c *hostCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descHostCPU
	ch <- descHostCPUs
	ch <- descHostMemTotal
	ch <- descHostMemAvail
}

func (c *hostCollector) Collect(ch chan<- prometheus.Metric) {
	root := c.procRoot
	if root == "" {
		root = procfs.DefaultMountPoint
	}
	fs, err := procfs.NewFS(root)
	if err != nil {
		return
	}
	if st, err := fs.Stat(); err == nil {
		t := st.CPUTotal
		for _, m := range []struct {
			mode string
			v    float64
		}{{"user", t.User}, {"nice", t.Nice}, {"system", t.System}, {"idle", t.Idle}, {"iowait", t.Iowait},
			{"irq", t.IRQ}, {"softirq", t.SoftIRQ}, {"steal", t.Steal}} {
			ch <- prometheus.MustNewConstMetric(descHostCPU, prometheus.CounterValue, m.v, m.mode)
		}
		ch <- prometheus.MustNewConstMetric(descHostCPUs, prometheus.GaugeValue, float64(len(st.CPU)))
	}
	if mi, err := fs.Meminfo(); err == nil && mi.MemTotalBytes != nil && mi.MemAvailableBytes != nil {
		ch <- prometheus.MustNewConstMetric(descHostMemTotal, prometheus.GaugeValue, float64(*mi.MemTotalBytes))
		ch <- prometheus.MustNewConstMetric(descHostMemAvail, prometheus.GaugeValue, float64(*mi.MemAvailableBytes))
	}
}
