// Package http is WasmWiz's REST API: routes on the standard library's
// ServeMux, the one error→status table, middleware (request ids, security
// headers, access log, metrics, client IP, auth), request size limits,
// rate-limit headers, /healthz, /readyz, /metrics and /api/openapi.json.
//
// Handlers return error; one adapter (errors.go) writes failures. Every
// execute route goes through the root package's Executor.
package http

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"sort"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmwiz/wasmwiz"
)

// ReadinessCheck is one dependency /readyz asks, e.g. "database" or "redis".
type ReadinessCheck struct {
	Name string
	Ping func(ctx context.Context) error
}

// DefaultMaxUserRequests and DefaultUserRequestRate are serve's defaults
// of Options.MaxUserRequests and Options.UserRequestRate
// (WASMWIZ_MAX_USER_REQUESTS, WASMWIZ_USER_REQUEST_RATE); the web page's
// tests run under them.
const (
	DefaultMaxUserRequests = 4
	DefaultUserRequestRate = 20
)

// Options configure a Server. Engine, Tiers, Limiter and the services its
// routes need must be set; the rest have defaults.
type Options struct {
	Users   wasmwiz.UserService
	Keys    wasmwiz.APIKeyService
	Tiers   wasmwiz.TierService
	Modules wasmwiz.ModuleService
	Runs    wasmwiz.RunService

	Engine  wasmwiz.Engine
	Limiter wasmwiz.RateLimiter
	Usage   wasmwiz.UsageRecorder // nil: runs are not recorded

	// Epochs is the database's cache epoch: after every change that a
	// replica's cache must not survive (a key revoked, a user or tier
	// changed, a module deleted or made private) the server publishes it to
	// Limiter before it answers, so that the next request of every replica
	// reads what changed. Nil: nothing is published (then nothing may be
	// cached: NoCache).
	Epochs wasmwiz.CacheEpochService
	// NoCache turns the execute path's cache (wasmwiz.Directory) off: every
	// request reads its key, tier and module from the stores.
	NoCache bool
	// Background runs: Runs must also be a wasmwiz.RunStore, and Queue set;
	// Events carries live output (nil: event streams read the record only).
	Queue  wasmwiz.RunQueue
	Events wasmwiz.RunEvents

	// Readiness lists what /readyz pings: one round at a time, whose answer
	// serves the calls of the next second.
	Readiness []ReadinessCheck

	// Auth off lets anonymous callers execute inline modules under the free
	// tier, rate-limited per client IP (development only).
	Auth bool
	// TrustedProxies are the ranges whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// MaxAuthFailures bounds the API keys that do not authenticate one
	// client address (an IPv4 address, an IPv6 /64) may send a minute, and
	// 8 times that its network (an IPv4 /24, an IPv6 /48), counted by
	// Limiter across replicas: each costs a store lookup. Past either the
	// address's keys answer 429 (ERATELIMIT) for the rest of the minute
	// without a lookup, except keys that authenticated on this replica
	// before. Zero: no bound.
	MaxAuthFailures int
	// MaxUserRequests bounds one user's requests in flight at once on this
	// replica, and UserRequestRate the requests a second one user may start
	// on it (in bursts of twice that), on every authenticated route but the
	// execute routes (bounded by the caller's tier): each such request may
	// hold a connection of this replica's database pool, shared by every
	// tenant. An event stream (8 open per user) counts as such a request
	// until its key is looked up, not while it lasts. All of a user's keys
	// count together. Past either the request answers 429 (ERATELIMIT) with
	// Retry-After without touching the store (a key this replica has seen
	// authenticate is not even looked up). An execute request takes a token
	// of a bucket of its own (rate UserRequestRate) when it is refused with a
	// 4xx (not found, invalid, too large, over a quota: it cost a lookup or a
	// parse), and answers 429 while its user has none left; and at most
	// max(8, the tier's max_concurrent) of a user's execute requests wait for
	// their run's admission at once (both while either setting is on). Zero:
	// no such bound.
	MaxUserRequests int
	UserRequestRate int

	// MaxLimits clamps every tier's per-run limits (the server's
	// WASMWIZ_MAX_TIMEOUT, WASMWIZ_MAX_MEMORY and WASMWIZ_MAX_FILE_WRITE; a
	// zero field: no clamp).
	MaxLimits wasmwiz.Limits

	// MaxConcurrentRuns bounds the runs in flight on this replica (zero: no
	// bound); QueueSize more wait at most QueueTimeout, the rest get 503.
	MaxConcurrentRuns int
	QueueSize         int
	QueueTimeout      time.Duration

	// MaxBodyMemory bounds the bytes of large request bodies (execute and
	// module upload bodies over 1MiB, or of unknown length) the server holds
	// at once, each counted at its declared length, else at its route's cap,
	// from before it is read until its request ends. Past it a request
	// waits at most BodyMemoryWait (default 5s), then answers 503 with
	// Retry-After. Zero: no bound.
	MaxBodyMemory  int64
	BodyMemoryWait time.Duration

	// MinTransferRate and TransferGrace bound how slowly a client may send
	// a request body or read an answer: TransferGrace to start, then
	// MinTransferRate bytes per second on average; slower connections are
	// cut. Zero MinTransferRate: no such deadlines (the server's own
	// timeouts still apply).
	MinTransferRate int64
	TransferGrace   time.Duration

	// Logger receives the access log and internal errors (nil: slog.Default()).
	Logger *slog.Logger

	// Registerer receives the server's metrics, and Gatherer is what
	// /metrics serves. Both nil: a new registry with the Go and process
	// collectors. A Registerer that is a *prometheus.Registry is also used
	// as the Gatherer when Gatherer is nil.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer

	// SeparateMetrics leaves /metrics out of Handler (serve it with
	// MetricsHandler on WASMWIZ_METRICS_ADDR).
	SeparateMetrics bool
	// MetricsToken, when set, is the bearer token /metrics wants; any other
	// request is 401.
	MetricsToken string

	// ProcRoot is where host CPU and memory are read ("/proc" when empty).
	ProcRoot string

	// Now returns the current time (nil: time.Now).
	Now func() time.Time
}

// Route is one registered method and path pattern.
type Route struct {
	Method  string
	Pattern string // ServeMux path pattern, e.g. /api/v1/modules/{id}
}

// Server is the HTTP service. Make one with NewServer.
type Server struct {
	opts      Options
	log       *slog.Logger
	exec      *wasmwiz.Executor
	dir       *wasmwiz.Directory // nil: nothing cached
	admitted  map[string]bool    // the patterns of the routes Executor.Execute admits
	streamed  map[string]bool    // the patterns of the event streams
	gate      *wasmwiz.RunGate
	authFail  *authFailures     // nil: failed authentications are not bounded
	userReqs  *userRequests     // nil: a user's other requests are not bounded
	bounded   map[string]bool   // the patterns of the routes userReqs counts
	bodies    *wasmwiz.BodyGate // nil: no bound on body bytes in flight
	mux       *http.ServeMux
	routes    []Route
	metrics   *metrics
	streams   streamSlots
	gatherer  prometheus.Gatherer
	handler   http.Handler
	transfer  transfer    // body and answer deadlines (deadline.go)
	draining  atomic.Bool // set by Drain: shutting down
	readiness readiness   // /readyz's checks (health.go)
}

// NewServer builds a server from opts. It returns an error when the metrics
// cannot be registered (e.g. registered twice on one registry).
func NewServer(opts Options) (*Server, error) {
	s := &Server{opts: opts, log: opts.Logger, mux: http.NewServeMux(),
		transfer: transfer{grace: opts.TransferGrace, minRate: opts.MinTransferRate}}
	if s.log == nil {
		s.log = slog.Default()
	}
	if opts.MaxConcurrentRuns > 0 {
		s.gate = wasmwiz.NewRunGate(opts.MaxConcurrentRuns, opts.QueueSize, opts.QueueTimeout)
	}
	if opts.MaxBodyMemory > 0 {
		wait := opts.BodyMemoryWait
		if wait <= 0 {
			wait = 5 * time.Second
		}
		s.bodies = wasmwiz.NewBodyGate(opts.MaxBodyMemory, wait)
	}
	s.readiness = readiness{checks: opts.Readiness, log: s.log, now: s.now}
	s.authFail = newAuthFailures(opts.Limiter, opts.MaxAuthFailures, s.log, s.now)
	s.userReqs = newUserRequests(opts.MaxUserRequests, opts.UserRequestRate, s.now)
	if !opts.NoCache && opts.Epochs != nil {
		s.dir = &wasmwiz.Directory{Keys: opts.Keys, Modules: opts.Modules, Tiers: opts.Tiers, Now: opts.Now}
	}
	s.exec = &wasmwiz.Executor{
		Directory:      s.dir,
		Engine:         opts.Engine,
		Modules:        opts.Modules,
		Tiers:          opts.Tiers,
		Limiter:        opts.Limiter,
		Usage:          opts.Usage,
		Gate:           s.gate,
		MaxLimits:      opts.MaxLimits,
		AllowAnonymous: !opts.Auth,
		Queue:          opts.Queue,
		Events:         opts.Events,
		StoredRuns:     opts.Runs,
		Now:            opts.Now,
	}
	if rs, ok := opts.Runs.(wasmwiz.RunStore); ok {
		s.exec.Runs = rs
	}
	reg, gath := opts.Registerer, opts.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg = r
		if gath == nil {
			gath = r
		}
	} else if gath == nil {
		if g, ok := reg.(prometheus.Gatherer); ok {
			gath = g
		} else {
			gath = prometheus.DefaultGatherer
		}
	}
	s.gatherer = gath
	m, err := newMetrics(reg, s)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	s.registerRoutes()
	s.handler = s.middleware(s.mux)
	return s, nil
}

// CacheStats returns the lookups of the execute path's cache so far (zero
// when caching is off).
func (s *Server) CacheStats() wasmwiz.DirectoryStats {
	if s.dir == nil {
		return wasmwiz.DirectoryStats{}
	}
	return s.dir.Stats()
}

// Executor returns the executor the execute routes call: serve hands it
// to the queue, which runs background runs through it, and to the sweeper
// of runs whose replica stopped.
func (s *Server) Executor() *wasmwiz.Executor { return s.exec }

// Handler returns the API with every middleware, composed in one place.
func (s *Server) Handler() http.Handler { return s.handler }

// MetricsHandler returns the /metrics handler, for a separate listener.
func (s *Server) MetricsHandler() http.Handler { return s.metricsHandler() }

// Routes returns every registered method and pattern, sorted.
func (s *Server) Routes() []Route {
	out := append([]Route(nil), s.routes...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Pattern != out[j].Pattern {
			return out[i].Pattern < out[j].Pattern
		}
		return out[i].Method < out[j].Method
	})
	return out
}

func (s *Server) now() time.Time {
	if s.opts.Now != nil {
		return s.opts.Now()
	}
	return time.Now()
}

// access levels of a route.
const (
	public = iota // no caller needed (health, metrics, openapi)
	caller        // an authenticated user (or anonymous, where the executor allows it)
	admin         // an admin user
	anyone        // execute routes: a user, or anonymous when auth is off
)

// handle registers fn for method and pattern at an access level. The
// requests of a route for callers or admins count against their user's
// bound (userRequests), unless it is an execute route, which has bounds of
// its own; an event stream counts until its key is looked up (handleStream).
func (s *Server) handle(method, pattern string, access int, fn handlerFunc) {
	s.routes = append(s.routes, Route{Method: method, Pattern: pattern})
	if key := method + " " + pattern; (access == caller || access == admin) && !s.admitted[key] {
		if s.bounded == nil {
			s.bounded = map[string]bool{}
		}
		s.bounded[key] = true
	}
	h := fn
	switch access {
	case caller:
		h = requireUser(fn)
	case admin:
		h = requireAdmin(fn)
	case anyone:
		if s.opts.Auth {
			h = requireUser(fn)
		}
	}
	s.mux.Handle(method+" "+pattern, s.route(method+" "+pattern, h))
}

// handleExecute registers an execute route: its caller may come from the
// Directory's cache, because Executor.Execute confirms it when it admits the
// run (and reads it again if it is stale).
func (s *Server) handleExecute(method, pattern string, access int, fn handlerFunc) {
	if s.admitted == nil {
		s.admitted = map[string]bool{}
	}
	s.admitted[method+" "+pattern] = true
	s.handle(method, pattern, access, fn)
}

// handleStream registers an event stream: bounded by the user's open
// streams (streamSlots). Opening one is a request of userRequests like
// any other, a token of the user's rate and a request in flight until its
// key is looked up; the stream then gives back its place in flight, which
// it would otherwise hold for as long as its run.
func (s *Server) handleStream(method, pattern string, access int, fn handlerFunc) {
	if s.streamed == nil {
		s.streamed = map[string]bool{}
	}
	s.streamed[method+" "+pattern] = true
	s.handle(method, pattern, access, fn)
}

func (s *Server) registerRoutes() {
	s.handle("GET", "/healthz", public, s.healthz)
	s.handle("GET", "/readyz", public, s.readyz)
	if !s.opts.SeparateMetrics {
		s.routes = append(s.routes, Route{Method: "GET", Pattern: "/metrics"})
		s.mux.Handle("GET /metrics", s.metricsHandler())
	}
	s.handle("GET", "/api/openapi.json", public, s.openAPI)

	s.handleExecute("POST", "/api/v1/execute", anyone, s.execute)
	s.handleExecute("POST", legacyExecutePath, anyone, s.legacyExecute)

	s.handle("POST", "/api/v1/modules", caller, s.createModule)
	s.handle("GET", "/api/v1/modules", caller, s.listModules)
	s.handle("GET", "/api/v1/modules/{id}", caller, s.getModule)
	s.handle("DELETE", "/api/v1/modules/{id}", caller, s.deleteModule)
	s.handle("PATCH", "/api/v1/modules/{id}", caller, s.updateModule)
	s.handleExecute("POST", "/api/v1/modules/{id}/execute", caller, s.executeModule)

	s.handle("GET", "/api/v1/runs", caller, s.listRuns)
	s.handle("GET", "/api/v1/runs/{id}", caller, s.getRun)
	s.handleStream("GET", "/api/v1/runs/{id}/events", caller, s.runEvents)
	s.handle("POST", "/api/v1/runs/{id}/cancel", caller, s.cancelRun)
	s.handle("POST", "/api/v1/webhook-secret", caller, s.rotateWebhookSecret)
	s.handle("GET", "/api/v1/usage", caller, s.usage)
	s.handle("GET", "/api/v1/usage/daily", caller, s.dailyUsage)
	s.handle("GET", "/api/v1/me", caller, s.me)

	s.handle("POST", "/api/v1/keys", caller, s.createKey)
	s.handle("GET", "/api/v1/keys", caller, s.listKeys)
	s.handle("DELETE", "/api/v1/keys/{id}", caller, s.revokeKey)

	s.handle("POST", "/api/v1/admin/users", admin, s.adminCreateUser)
	s.handle("GET", "/api/v1/admin/users", admin, s.adminListUsers)
	s.handle("GET", "/api/v1/admin/users/{id}", admin, s.adminGetUser)
	s.handle("PATCH", "/api/v1/admin/users/{id}", admin, s.adminUpdateUser)
	s.handle("GET", "/api/v1/admin/tiers", admin, s.adminListTiers)
	s.handle("POST", "/api/v1/admin/tiers", admin, s.adminCreateTier)
	s.handle("GET", "/api/v1/admin/tiers/{name}", admin, s.adminGetTier)
	s.handle("PUT", "/api/v1/admin/tiers/{name}", admin, s.adminPutTier)
	s.handle("GET", "/api/v1/admin/keys", admin, s.adminListKeys)
	s.handle("POST", "/api/v1/admin/keys", admin, s.adminCreateKey)
	s.handle("DELETE", "/api/v1/admin/keys/{id}", admin, s.revokeKey) // the store lets an admin revoke any key
	s.handle("GET", "/api/v1/admin/stats", admin, s.adminStats)

	s.registerWebRoutes() // GET / and GET /static/{file}: the web UI (web.go)

	// Everything else: 404 in the error shape (ServeMux answers 405 itself
	// for a known path with another method; the middleware rewrites it).
	s.mux.Handle("/", s.route("", s.notFoundOrMethod))
}
