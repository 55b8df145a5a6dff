package worker

import (
	"context"

	"github.com/wasmwiz/wasmwiz/internal/engine"
)

// NewEngine starts the real engine as `wasmwiz worker` does (cmd/wasmwiz
// wires the same), for the workers these tests start.
func NewEngine(ctx context.Context, s EngineSettings) (GuestEngine, error) {
	return engine.New(ctx, engine.Options{
		CacheDir:         s.CacheDir,
		CacheMaxBytes:    s.CacheMaxBytes,
		MemoryCacheBytes: s.MemoryCacheBytes,
		NoGuestInterrupt: true,
		Logger:           s.Logger,
	})
}
