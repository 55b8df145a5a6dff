package main

import (
	"context"

	"github.com/wasmwiz/wasmwiz/internal/engine"
	"github.com/wasmwiz/wasmwiz/internal/worker"
)

// cmdWorker is the hidden `wasmwiz worker` subcommand: a guest-running worker
// process of serve's pool. It speaks the pool's protocol on its stdin and
// stdout (never started by hand) and exits when its stdin closes.
func cmdWorker(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "worker", `usage: wasmwiz worker

Internal: a guest-running worker process that wasmwiz serve starts from its
own executable and talks to on stdin and stdout. Not started by hand.`)
	if err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	return worker.ServeProcess(ctx, worker.ServeOptions{NewEngine: newWorkerEngine})
}

// newWorkerEngine starts a worker's engine (engine.NewWorker: no in-guest
// interruption, the pool kills a worker past its deadline).
func newWorkerEngine(ctx context.Context, s worker.EngineSettings) (worker.GuestEngine, error) {
	return engine.NewWorker(ctx, s.CacheDir, s.CacheMaxBytes, s.MemoryCacheBytes, s.Logger)
}
