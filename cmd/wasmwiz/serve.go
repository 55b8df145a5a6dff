package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/wasmwiz/wasmwiz"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/inmem"
	"github.com/wasmwiz/wasmwiz/internal/postgres"
	"github.com/wasmwiz/wasmwiz/internal/queue"
	"github.com/wasmwiz/wasmwiz/internal/redis"
	"github.com/wasmwiz/wasmwiz/internal/usage"
	"github.com/wasmwiz/wasmwiz/internal/worker"
)

// BootstrapEmail is the email of the admin serve creates on an empty
// database; change it afterwards with the admin API or CLI.
const BootstrapEmail = "admin@localhost"

// handlerDrain bounds the wait, after the grace period, for cut-off
// requests to return once their runs are stopped.
const handlerDrain = 10 * time.Second

// ServeOptions are what the program itself decides about serve rather than
// its configuration. Zero values are what `wasmwiz serve` uses; end-to-end
// tests set them.
type ServeOptions struct {
	// WorkerCommand starts a guest worker; default: this executable with
	// the argument "worker".
	WorkerCommand []string
	// WorkerEnv is the whole environment of a worker (nothing is inherited).
	WorkerEnv []string
	// WorkerSpares are warm workers beyond WASMWIZ_WORKERS (default 1).
	WorkerSpares int
	// RedisPrefix starts every rate-limit key in Redis (default the limiter's).
	RedisPrefix string
	// RetentionInterval is how often old runs are deleted (default 5 minutes).
	RetentionInterval time.Duration
	// EpochInterval is how often the database's cache epoch is published
	// to the limiter (default 1s).
	EpochInterval time.Duration
	// UsageFlushInterval is how long a usage record may wait for its batch
	// (default the writer's, 1s).
	UsageFlushInterval time.Duration
	// StaleRunsAfter is how long a running background run may go without a
	// heartbeat before it is failed (default 30s).
	StaleRunsAfter time.Duration
	// Listening, when set, is called once the listeners are bound, before
	// the server accepts requests.
	Listening func(s *Server)
}

// Server is a running `wasmwiz serve`: every part wired from the config.
// Make one with NewServer, run it with Run.
type Server struct {
	cfg  *Config
	opts ServeOptions
	env  *Env
	log  *slog.Logger

	store   Store
	usage   *usage.Writer
	memory  *inmem.Limiter
	shared  *redis.Limiter // nil without WASMWIZ_REDIS_URL
	rclient *goredis.Client
	limiter wasmwiz.RateLimiter
	pool    *worker.Pool
	api     *wwhttp.Server

	events   wasmwiz.RunEvents
	bus      *postgres.EventBus // nil on SQLite
	queue    *queue.Queue
	webhooks *queue.Webhooks

	ln, metricsLn   net.Listener
	srv, metricsSrv *http.Server

	handlers atomic.Int64 // requests being handled, for the end of a shutdown

	retention wasmwiz.Batches // deleteRuns's

	// drainCut ends the drain delay early (tests; closed once by cutDrain).
	drainCut     chan struct{}
	drainCutOnce sync.Once

	closeOnce sync.Once
	closeErr  error
}

func cmdServe(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "serve", `usage: wasmwiz serve

Runs the WasmWiz service until Ctrl-C or SIGTERM, then shuts down gracefully
(a second signal stops it at once). It is configured by WASMWIZ_* environment
variables: wasmwiz config prints their values. Without any, it listens on
http://127.0.0.1:8080 and keeps its SQLite database and compile cache in
./wasmwiz-data; on an empty database it creates the admin admin@localhost and
prints its API key once (a new one: wasmwiz keys create --user
admin@localhost).`)
	if err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	return Serve(ctx, env, ServeOptions{})
}

// Serve loads the configuration, starts the server and runs it until ctx
// ends; then it shuts down gracefully.
func Serve(ctx context.Context, env *Env, opts ServeOptions) error {
	cfg, err := LoadConfig(env.Getenv)
	if err != nil {
		return err
	}
	s, err := NewServer(ctx, cfg, env, opts)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// newLogger makes the process's logger from the config. Durations are
// written as text with their unit ("1.5s"), in JSON too, where slog would
// write nanoseconds.
func newLogger(cfg *Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	hopts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationsAsText}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, hopts))
	}
	return slog.New(slog.NewTextHandler(w, hopts))
}

// durationsAsText is a slog ReplaceAttr that writes durations as their
// String ("250ms").
func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// NewServer wires every part in order: logger, store (migrated; on an empty
// database the first admin is created and its key printed once with the
// URL), usage writer, rate limiter (in memory, or Redis with the in-memory
// one as fallback), worker pool, HTTP API and listeners. It returns with the
// listeners bound and nothing served yet; on an error everything started is
// closed again.
func NewServer(ctx context.Context, cfg *Config, env *Env, opts ServeOptions) (_ *Server, err error) {
	s := &Server{cfg: cfg, opts: opts, env: env, log: newLogger(cfg, env.Stderr), drainCut: make(chan struct{})}
	defer func() {
		if err != nil {
			s.closeParts(context.WithoutCancel(ctx))
		}
	}()

	if s.store, err = OpenStore(ctx, cfg); err != nil {
		return nil, err
	}
	if err = migrateStore(ctx, s.store); err != nil {
		return nil, err
	}
	// Probe: records held through an outage are written as soon as the
	// database answers again, not when a long backoff ends.
	s.usage = usage.New(s.store, usage.Options{Logger: s.log, FlushInterval: opts.UsageFlushInterval, Probe: s.store.Ping})

	s.memory = inmem.New(inmem.Options{})
	var lim wasmwiz.RateLimiter = s.memory
	readiness := []wwhttp.ReadinessCheck{{Name: "database", Ping: s.store.Ping}}
	if cfg.RedisURL != "" {
		if s.rclient, err = redis.NewClient(cfg.RedisURL); err != nil {
			return nil, err
		}
		if s.shared, err = redis.New(redis.Options{
			Client: s.rclient, Prefix: opts.RedisPrefix, Timeout: cfg.RedisTimeout,
			Fallback: s.memory, Logger: s.log,
		}); err != nil {
			return nil, err
		}
		lim = s.shared
		readiness = append(readiness, wwhttp.ReadinessCheck{Name: "redis", Ping: s.shared.Ping},
			// While Redis is away no replica hears of another's changes:
			// cached keys, tiers and modules are read again after a second.
			wwhttp.ReadinessCheck{Name: "cache", Ping: func(context.Context) error {
				if s.shared.Stats().FallbackActive {
					return wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "cache confirmed by this replica alone: entries live at most %s", wasmwiz.DefaultFallbackMaxAge)
				}
				return nil
			}})
	}
	s.limiter = lim
	// The cache epoch, before the first request.
	s.publishEpoch(ctx)

	command := opts.WorkerCommand
	if len(command) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "cannot find this executable to start workers: %v", err)
		}
		command = []string{exe, "worker"}
	}
	spares := opts.WorkerSpares
	if spares == 0 {
		spares = 1
	}
	var workerLevel slog.Level
	_ = workerLevel.UnmarshalText([]byte(cfg.LogLevel))
	if s.pool, err = worker.New(ctx, worker.Options{
		Size: cfg.Workers, Spares: spares, Command: command, Env: opts.WorkerEnv,
		CacheDir: cfg.CacheDir, CacheMaxBytes: cfg.CacheMaxBytes, MemoryCacheBytes: cfg.CompileCacheBytes, FilesDir: cfg.FilesDir,
		WorkerLogLevel: workerLevel, Logger: s.log,
	}); err != nil {
		return nil, err
	}

	// A replica whose workers cannot start (a binary replaced under it, a
	// full process table) cannot run anything: not ready.
	readiness = append(readiness, wwhttp.ReadinessCheck{Name: "workers", Ping: func(context.Context) error {
		if st := s.pool.Stats(); st.Workers == 0 {
			return wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "no worker process is running (%d failed starts)", st.StartFails)
		}
		return nil
	}})

	// Each part registers the collector of what it counts; the HTTP server
	// adds its own (requests, runs, the run gate, host) to the same registry.
	// Background runs: the queue on the store's database, live events
	// through PostgreSQL's LISTEN/NOTIFY between replicas (in process on
	// SQLite, which has one replica), webhooks signed and sent to public
	// addresses only unless WASMWIZ_WEBHOOK_ALLOW says otherwise.
	hub := wasmwiz.NewEventHub()
	s.events = hub
	if db, ok := s.store.(*postgres.DB); ok {
		if s.bus, err = postgres.NewEventBus(ctx, db, hub, s.log); err != nil {
			return nil, err
		}
		s.events = s.bus
	}
	s.webhooks = queue.NewWebhooks(queue.WebhookOptions{Runs: s.store, Allow: cfg.WebhookAllow, Logger: s.log})
	if s.queue, err = openQueue(s.store, queue.Options{
		Webhooks: s.webhooks, Workers: cfg.AsyncWorkers, Logger: s.log,
		Runs: s.store,
	}); err != nil {
		return nil, err
	}

	reg := prometheus.NewRegistry()
	collectors := append([]prometheus.Collector{s.pool, s.queue}, s.usage.Metrics()...)
	if s.shared != nil {
		collectors = append(collectors, s.shared.Metrics()...)
	}
	for _, c := range collectors {
		if err = reg.Register(c); err != nil {
			return nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "registering metrics: %v", err)
		}
	}
	if s.api, err = wwhttp.NewServer(wwhttp.Options{
		Users: s.store, Keys: s.store, Tiers: s.store, Modules: s.store, Runs: s.store,
		Engine: s.pool, Limiter: s.limiter, Usage: s.usage, Epochs: s.store,
		Queue: s.queue, Events: s.events,
		Readiness:         readiness,
		Auth:              cfg.Auth,
		TrustedProxies:    cfg.TrustedProxies,
		MaxAuthFailures:   cfg.MaxAuthFailures,
		MaxUserRequests:   cfg.MaxUserRequests,
		UserRequestRate:   cfg.UserRequestRate,
		MaxLimits:         cfg.MaxLimits(),
		MaxConcurrentRuns: cfg.MaxConcurrentRuns,
		QueueSize:         cfg.QueueSize,
		QueueTimeout:      cfg.QueueTimeout,
		MaxBodyMemory:     cfg.MaxBodyMemory,
		BodyMemoryWait:    cfg.QueueTimeout,
		Logger:            s.log,
		SeparateMetrics:   cfg.MetricsAddr != "",
		MetricsToken:      cfg.MetricsToken,
		MinTransferRate:   cfg.MinTransferRate,
		TransferGrace:     cfg.HeaderTimeout,
		Registerer:        reg,
	}); err != nil {
		return nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "cannot build the HTTP server: %v", err)
	}
	s.queue.SetRunner(s.api.Executor())

	var lc net.ListenConfig
	if s.ln, err = lc.Listen(ctx, "tcp", cfg.Addr); err != nil {
		return nil, wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, err, "WASMWIZ_ADDR: cannot listen on %s: %v", cfg.Addr, err)
	}
	api := s.api.Handler()
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.handlers.Add(1)
			defer s.handlers.Add(-1)
			api.ServeHTTP(w, r)
		}),
		// Bodies and answers get deadlines per request from the API
		// (WASMWIZ_MIN_TRANSFER_RATE): no ReadTimeout or WriteTimeout here,
		// which would count from the headers and cut the longest run.
		ReadHeaderTimeout: cfg.HeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    int(cfg.MaxHeaderBytes),
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	if cfg.MetricsAddr != "" {
		if s.metricsLn, err = lc.Listen(ctx, "tcp", cfg.MetricsAddr); err != nil {
			return nil, wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, err, "WASMWIZ_METRICS_ADDR: cannot listen on %s: %v", cfg.MetricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", s.api.MetricsHandler())
		s.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: cfg.HeaderTimeout, IdleTimeout: cfg.IdleTimeout,
			MaxHeaderBytes: int(cfg.MaxHeaderBytes), ReadTimeout: cfg.HeaderTimeout, WriteTimeout: time.Minute}
	}

	// Bootstrap after binding, so that the key is printed with the real URL.
	if err = s.bootstrap(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// URL returns the API's base URL, e.g. http://127.0.0.1:8080; for a
// wildcard address (":8080") it names loopback, which reaches it from this
// host.
func (s *Server) URL() string { return "http://" + reachable(s.ln.Addr()) }

// reachable returns a listener's address with a wildcard IP replaced by
// loopback.
func reachable(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok || !ta.IP.IsUnspecified() {
		return a.String()
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(ta.Port))
}

// Addr returns the API's bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// MetricsURL returns the base URL of the separate metrics listener, or ""
// when /metrics is served on the API's address.
func (s *Server) MetricsURL() string {
	if s.metricsLn == nil {
		return ""
	}
	return "http://" + reachable(s.metricsLn.Addr())
}

// Store returns the server's database, for tests and tools that inspect it.
func (s *Server) Store() Store { return s.store }

// LimiterStats returns the rate limiter's decisions so far.
func (s *Server) LimiterStats() wasmwiz.RateLimitStats {
	if s.shared != nil {
		return s.shared.Stats()
	}
	return s.memory.Stats()
}

// UsageStats returns the usage writer's counters.
func (s *Server) UsageStats() usage.Stats { return s.usage.Stats() }

// CacheStats returns the lookups of the execute path's cache so far.
func (s *Server) CacheStats() wasmwiz.DirectoryStats { return s.api.CacheStats() }

// PoolStats returns the worker pool's counters.
func (s *Server) PoolStats() worker.Stats { return s.pool.Stats() }

func (s *Server) bootstrap(ctx context.Context) error {
	u, key, created, err := s.store.Bootstrap(ctx, BootstrapEmail)
	if err != nil {
		return err
	}
	if !created {
		return nil
	}
	s.log.Info("created the first admin; its key is printed on stdout, once", "email", u.Email, "user_id", u.ID)
	// The key is on the line that says "key", so that `grep -i key` of the
	// container's output finds it (README).
	fmt.Fprintf(s.env.Stdout, "wasmwiz: created the first admin, %s, on an empty database\n", u.Email)
	fmt.Fprintf(s.env.Stdout, "wasmwiz: admin API key (shown only now; keep it): %s\n", key)
	fmt.Fprintf(s.env.Stdout, "wasmwiz: try it: curl -H 'Authorization: Bearer %s' %s/api/v1/me\n", key, s.URL())
	return nil
}

func storeKind(cfg *Config) string {
	if cfg.IsPostgres() {
		return "postgres"
	}
	return "sqlite"
}

// Background runs: how often a replica looks for runs whose replica died,
// and after how long without a heartbeat a running run is taken for dead.
const (
	staleRunsInterval = 5 * time.Second
	staleRunsAfter    = 30 * time.Second
	// abandonedRunsInterval: how often a replica fails the runs whose job
	// the queue gave up (queue.FailAbandonedRuns).
	abandonedRunsInterval = time.Minute
)

// staleRunsLoop fails, every staleRunsInterval, the running runs whose
// replica sent no heartbeat for staleRunsAfter: a replica that died mid-run
// leaves its runs failed with a message, never run again. Every replica
// runs it; the store's update takes each run once. Its calls have the
// store's call timeout (no wasmwiz.WithOwnDeadline), each failing a batch
// of runs sized to finish in it (Executor.FailStaleRuns): a sweep that
// fails is tried again at the next interval.
func (s *Server) staleRunsLoop(ctx context.Context) {
	after := s.opts.StaleRunsAfter
	if after <= 0 {
		after = staleRunsAfter
	}
	every := min(staleRunsInterval, after/2)
	exec := s.api.Executor()
	runEvery(ctx, every, every, func() {
		if n, err := exec.FailStaleRuns(ctx, after); err != nil && ctx.Err() == nil {
			s.log.Warn("looking for runs of dead replicas failed", "err", err)
		} else if n > 0 {
			s.log.Warn("failed runs whose replica stopped sending heartbeats", "runs", n)
		}
	})
}

// abandonedRunsLoop fails, every abandonedRunsInterval, the runs whose job
// the queue gave up while the store could not fail them (queue.Queue.
// FailAbandonedRuns): they would stay queued for good, each holding a place
// of its owner's max_concurrent. Every replica runs it; a run is failed
// once.
func (s *Server) abandonedRunsLoop(ctx context.Context) {
	runEvery(ctx, abandonedRunsInterval, abandonedRunsInterval, func() {
		if n, err := s.queue.FailAbandonedRuns(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("failing the runs whose job the queue gave up", "failed", n, "err", err)
		} else if n > 0 {
			s.log.Warn("failed runs whose job the queue gave up", "runs", n)
		}
	})
}

// runEvery calls f after first and then every d, until ctx ends: the
// server's periodic work (cache epoch, retention, runs of dead replicas).
func runEvery(ctx context.Context, first, d time.Duration, f func()) {
	wait := time.NewTimer(first)
	defer wait.Stop()
	select {
	case <-ctx.Done():
		return
	case <-wait.C:
	}
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		f()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
