// Package wasmwiz is the domain of WasmWiz, a service that runs other
// people's WebAssembly: its types (users, API keys, tiers and their limits,
// modules, run results and usage records), the interfaces of the services
// that store and run them, the error codes every layer speaks, and the
// orchestration of an execute request (Executor). It imports the standard
// library only; everything that talks to the world is an adapter in
// internal/, and cmd/wasmwiz is the one place that wires adapters together.
//
// # Layout
//
//	wasmwiz (this package)  domain types, service interfaces, Limits and Tier (tier fields
//	                        declared once, tierfield.go), error codes, Executor
//	cmd/wasmwiz             the program: serve, run, exec, migrate, users, keys, tiers, …
//	client                  Go client of the REST API (root package only)
//	internal/http           REST API, web page, middleware, metrics, the error → status table
//	internal/worker         pool of sandboxed worker processes that run guests for serve
//	internal/engine         wazero: inspection, compile cache, limits, WASI; runs in a worker
//	                        (and in-process for `wasmwiz run`)
//	internal/wasifs         the guest's file descriptors: stdio, and mounts through os.Root
//	internal/sqlite         stores on embedded SQLite (the default)
//	internal/postgres       the same stores on PostgreSQL (production)
//	internal/migration      one runner for both stores' frozen SQL migrations
//	internal/redis          rate limiter shared by replicas, with internal/inmem as fallback
//	internal/inmem          in-memory rate limiter (one node)
//	internal/*test, mock    test support, imported by tests only
//
// Adapters never import each other; internal/deploytest's TestImportRules
// checks it from `go list`, with the few allowed edges listed there.
//
// # The walk of an execute request
//
// POST /api/v1/execute (internal/http):
//
//  1. Middleware, outermost first: request id, access log and metrics,
//     security headers, panic recovery, client IP (trusted proxies), and
//     authentication: APIKeyService.Authenticate reads the key, its user and
//     the user's tier in one query and puts the user in the context.
//  2. The handler reads the body (multipart, JSON or raw wasm) under caps
//     derived from the caller's tier (Executor.CallerTier, TierLimits).
//  3. Executor.Execute validates the request, derives the run's Limits (the
//     tier's, clamped by the server's maxima and lowered by the caller),
//     takes a slot of the caller's concurrency (RateLimiter.Acquire), a slot
//     of the replica's RunGate, and one event of each of the tier's quotas
//     (RateLimiter.Allow; Redis, or in memory), loads a stored module
//     (ModuleService), and calls Engine.Run.
//  4. The engine of serve is internal/worker's Pool: it sends the run to an
//     idle worker process (preferring one that holds the module), which
//     compiles (or finds compiled) and runs the guest on internal/engine
//     under the run's limits, streaming output back; a run past its wall time
//     ends by killing its worker.
//  5. The Result goes back as JSON (ResultJSON); a usage record goes to the
//     UsageRecorder, which writes records in batches off the request path.
//
// A guest's outcome (ok, exit, trap, timeout, memory_limit, output_limit) is
// a Result, never an error; errors are the caller's mistakes or the
// server's trouble, each with a code (error.go) that the HTTP layer maps to
// a status in one table.
package wasmwiz
