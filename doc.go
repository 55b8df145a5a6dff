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
//	api                     the REST API's JSON shapes and its error → status table (standard
//	                        library and this package only): what the server sends and the
//	                        client returns
//	client                  Go client of the REST API (api and the standard library only)
//	internal/http           REST API, web page, middleware, metrics
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
//     authentication: the key, its user and the user's tier, read in one
//     query by APIKeyService.Authenticate, or on the execute routes taken
//     from this replica's cache (Directory) without a round trip.
//  2. The handler decides the caller once (Executor.Caller: tier, limits
//     under the server's clamps, rate key) and reads the body (multipart,
//     JSON or raw wasm) under caps derived from those limits.
//  3. Executor.Execute validates the request, resolves a stored module to
//     its digest and size (Directory, no bytes), computes the digest of
//     inline bytes once, lowers the limits by the caller's asks and checks
//     the module and stdin sizes; then RateLimiter.Admit takes a slot of the
//     caller's concurrency and one event of each of the tier's quotas, and
//     checks that the cache epoch of what was cached is current, in one call
//     (one Redis script); stale data is read again and the run admitted on
//     that. Then a slot of the replica's RunGate, and Engine.Run.
//  4. The engine of serve is internal/worker's Pool: it sends the run, by
//     digest, to an idle worker process that holds the module (the store is
//     read for the bytes only when none does), which compiles (or finds
//     compiled) and runs the guest on internal/engine under the run's
//     limits, streaming output back; a run past its wall time ends by
//     killing its worker.
//  5. The Result goes back as JSON (api.Result, which internal/http maps
//     it to); the slot is released
//     without waiting (the next Redis call carries it); a usage record goes
//     to the UsageRecorder, which writes records in batches off the request
//     path.
//
// A guest's outcome (ok, exit, trap, timeout, memory_limit, output_limit) is
// a Result, never an error; errors are the caller's mistakes or the
// server's trouble, each with a code (error.go) that the HTTP layer maps to
// a status in one table.
package wasmwiz
