package worker

import (
	"context"

	"github.com/wasmwiz/wasmwiz/internal/engine"
)

// NewEngine starts the in-process engine of a worker: internal/engine with
// NoGuestInterrupt, since the pool stops a run past its deadline by killing
// the worker, which also spares every guest the cost of in-guest checks.
// It is ServeOptions.NewEngine's default.
func NewEngine(ctx context.Context, s EngineSettings) (GuestEngine, error) {
	return engine.New(ctx, engine.Options{
		CacheDir:         s.CacheDir,
		MemoryCacheBytes: s.MemoryCacheBytes,
		NoGuestInterrupt: true,
		Logger:           s.Logger,
	})
}
