package worker

import (
	"context"

	"github.com/wasmwiz/wasmwiz/internal/engine"
)

// NewEngine starts the real engine as `wasmwiz worker` does
// (engine.NewWorker), for the workers these tests start.
func NewEngine(ctx context.Context, s EngineSettings) (GuestEngine, error) {
	return engine.NewWorker(ctx, s.CacheDir, s.CacheMaxBytes, s.MemoryCacheBytes, s.Logger)
}
