package main

import (
	"context"
	"fmt"

	"github.com/wasmwiz/wasmwiz/internal/worker"
)

// cmdWorker is the hidden `wasmwiz worker` subcommand: a guest-running worker
// process of serve's pool. It speaks the pool's protocol on its stdin and
// stdout (never started by hand) and exits when its stdin closes.
func cmdWorker(ctx context.Context, env *Env, args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("takes no arguments; it is started by wasmwiz serve")
	}
	return worker.ServeProcess(ctx, worker.ServeOptions{})
}
